-- The hour is published: what was written where.
UPDATE export_runs
SET status = 'succeeded',
    row_count = %(row_count)s,
    bytes = %(bytes)s,
    files = %(files)s,
    manifest_key = %(manifest_key)s,
    backup_manifest_key = %(backup_manifest_key)s,
    finished_at = now(),
    duration_ms = %(duration_ms)s,
    airflow_run_id = %(run_id)s,
    error = NULL
WHERE client_id = %(client_id)s
  AND interval_start = %(hour_start)s;
