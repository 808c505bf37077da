-- The export run of (client, hour), and whether a later hour of the client has
-- already started (then a first-time run of this hour is a backfill and takes
-- only the rows created inside it).
SELECT
    (SELECT status FROM export_runs
      WHERE client_id = %(client_id)s AND interval_start = %(hour_start)s) AS status,
    (SELECT row_count FROM export_runs
      WHERE client_id = %(client_id)s AND interval_start = %(hour_start)s) AS row_count,
    EXISTS (SELECT 1 FROM export_runs
             WHERE client_id = %(client_id)s AND interval_start > %(hour_start)s) AS later_run_exists;
