-- The export run of (client, hour) and what the hour's rule depends on:
--   status, row_count: the run's state and, once published, its row count;
--   committed_rows, committed_files: what the hour's marking committed (the rows
--     marked into the hour and the parts holding them; migration 0070);
--   later_run_exists: a later hour of the client already started (then a first-time
--     run of this hour is a backfill and takes only the rows created inside it);
--   earlier_hour_missing: in the order_window_hours before this hour, an hour has no
--     run although an earlier hour of that window has one: an earlier hour of this
--     client is still to come (several hours run at once), so this run takes only
--     its own hour's rows and leaves the older ones to their hour or a later run.
-- Parameters: client_id, hour_start, order_window_hours.
WITH this AS (
    SELECT status, row_count, committed_rows, committed_files
    FROM export_runs
    WHERE client_id = %(client_id)s
      AND interval_start = %(hour_start)s
),
window_runs AS (
    SELECT interval_start
    FROM export_runs
    WHERE client_id = %(client_id)s
      AND interval_start >= %(hour_start)s::timestamptz - make_interval(hours => %(order_window_hours)s::int)
      AND interval_start < %(hour_start)s::timestamptz
)
SELECT
    (SELECT status FROM this) AS status,
    (SELECT row_count FROM this) AS row_count,
    (SELECT committed_rows FROM this) AS committed_rows,
    (SELECT committed_files FROM this) AS committed_files,
    EXISTS (
        SELECT 1 FROM export_runs
        WHERE client_id = %(client_id)s
          AND interval_start > %(hour_start)s
    ) AS later_run_exists,
    EXISTS (
        SELECT 1
        FROM generate_series((SELECT min(interval_start) FROM window_runs),
                             %(hour_start)s::timestamptz - interval '1 hour',
                             interval '1 hour') AS g (h)
        WHERE NOT EXISTS (SELECT 1 FROM window_runs AS w WHERE w.interval_start = g.h)
    ) AS earlier_hour_missing;
