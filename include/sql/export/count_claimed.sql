-- Rows of (client, hour) as the export transaction sees them after mark_rows.sql
-- (or of a published hour): what the files must hold.
SELECT count(*)
FROM events_log
WHERE client_id = %(client_id)s
  AND export_hour = %(hour_start)s;
