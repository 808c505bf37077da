-- Export hours of the client that started before the visitor's rows were deleted and
-- were still running, or finished, after the backup purge began: such an export may
-- have written the hour's files (or its manifest) after the purge read that folder.
-- The caller purges again those of them that held the visitor.
SELECT interval_start
FROM export_runs
WHERE client_id = %(client_id)s
  AND started_at < %(deleted_at)s
  AND ((status = 'running' AND started_at > now() - interval '2 hours')
       OR finished_at >= %(scan_started_at)s)
