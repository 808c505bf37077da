-- The export run of (client, hour), locked for the claim transaction, and
-- whether a later hour of the client has already claimed rows.
SELECT
    (SELECT status FROM export_runs
      WHERE client_id = %(client_id)s AND interval_start = %(hour_start)s) AS status,
    (SELECT row_count FROM export_runs
      WHERE client_id = %(client_id)s AND interval_start = %(hour_start)s) AS row_count,
    EXISTS (SELECT 1 FROM export_runs
             WHERE client_id = %(client_id)s AND interval_start > %(hour_start)s) AS later_run_exists;
