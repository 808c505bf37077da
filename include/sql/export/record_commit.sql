-- What the hour's marking commits, in the SAME transaction as the marking: the rows
-- now in the hour and the parts holding them (key, rows, bytes, sha256). A later
-- run of the hour never publishes fewer of these rows without an operator's
-- choice (docs/runbook.md#events_export). The status stays as it is.
-- Parameters: client_id, hour_start, committed_rows, committed_files.
UPDATE export_runs
SET committed_rows = %(committed_rows)s,
    committed_files = %(committed_files)s,
    committed_at = now()
WHERE client_id = %(client_id)s
  AND interval_start = %(hour_start)s;
