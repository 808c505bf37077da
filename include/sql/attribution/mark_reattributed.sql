-- Re-attribution ran after the sync runs up to %(sync_run_id)s.
UPDATE attribution_sync_runs
SET reattributed_at = now()
WHERE sync_run_id <= %(sync_run_id)s
  AND reattributed_at IS NULL
  AND status <> 'running'
