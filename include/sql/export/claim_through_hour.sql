-- Claim for the NEWEST hour run so far: every unclaimed pending row of the
-- client created before the end of the hour, including rows of earlier hours
-- whose load transaction committed after those hours were exported.
UPDATE events_log
SET export_hour = %(hour_start)s
WHERE client_id = %(client_id)s
  AND export_hour IS NULL
  AND export_status = 'pending'
  AND created_at < %(hour_end)s;
