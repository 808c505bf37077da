-- Claim for a first-time run of an OLD hour (a later hour already ran): only the
-- unclaimed pending rows created inside the hour. Earlier stragglers are left to
-- the next newest-hour run.
UPDATE events_log
SET export_hour = %(hour_start)s
WHERE client_id = %(client_id)s
  AND export_hour IS NULL
  AND export_status = 'pending'
  AND created_at >= %(hour_start)s
  AND created_at < %(hour_end)s;
