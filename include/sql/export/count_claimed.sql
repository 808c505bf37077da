-- Rows of (client, hour): what the files must hold.
SELECT count(*)
FROM events_log
WHERE client_id = %(client_id)s
  AND export_hour = %(hour_start)s;
