-- Whether a sync run up to %(sync_run_id)s changed a mapping or released rows
-- and no re-attribution has followed it yet (also catches a re-attribution
-- that failed after an earlier run).
SELECT EXISTS (
    SELECT 1
    FROM attribution_sync_runs
    WHERE sync_run_id <= %(sync_run_id)s
      AND reattributed_at IS NULL
      AND status <> 'running'
      AND (mapped > 0 OR moved > 0 OR rows_released > 0)
      AND started_at >= now() - interval '7 days'
)
