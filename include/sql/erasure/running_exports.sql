-- Exports of the client that started before the visitor's rows were deleted
-- and were still running, or finished, after the backup scan began: such an
-- export may have uploaded the visitor's rows after the scan read that folder,
-- so the request stays pending and the next run scans again.
SELECT count(*)
FROM export_runs
WHERE client_id = %(client_id)s
  AND started_at < %(deleted_at)s
  AND ((status = 'running' AND started_at > now() - interval '2 hours')
       OR finished_at >= %(scan_started_at)s)
