-- Health check "check_export_runs" (docs/runbook.md#check_export_runs).
-- Every active client has a 'succeeded' export_runs row for each closed
-- hour: the export_lookback_hours whole UTC hours that ended at least
-- export_grace_minutes before the end of the run's data interval. Hours that
-- ended before the client was created are not expected.
-- Parameters: interval_end, export_lookback_hours, export_grace_minutes.
WITH bounds AS (
    SELECT date_trunc('hour',
                      %(interval_end)s::timestamptz - make_interval(mins => %(export_grace_minutes)s::int),
                      'UTC') AS last_end
),
hours AS (
    SELECT h AS interval_start, h + interval '1 hour' AS interval_end
    FROM bounds,
         generate_series(bounds.last_end - make_interval(hours => %(export_lookback_hours)s::int),
                         bounds.last_end - interval '1 hour',
                         interval '1 hour') AS h
),
missing AS (
    SELECT c.client_id, h.interval_start,
           coalesce(r.status, 'missing') AS status,
           left(r.error, 200) AS error
    FROM clients c
    CROSS JOIN hours h
    LEFT JOIN export_runs r
      ON r.client_id = c.client_id
     AND r.interval_start = h.interval_start
    WHERE c.active
      AND h.interval_end > c.created_at
      AND (r.status IS NULL OR r.status <> 'succeeded')
),
per_client AS (
    SELECT client_id,
           count(*) AS hours_missing,
           min(interval_start) AS since,
           jsonb_agg(jsonb_build_object('hour', interval_start, 'status', status, 'error', error)
                     ORDER BY interval_start) AS hours
    FROM missing
    GROUP BY client_id
)
SELECT
    NOT EXISTS (SELECT 1 FROM per_client) AS ok,
    (SELECT min(interval_start) FROM hours) AS first_hour,
    (SELECT max(interval_start) FROM hours) AS last_hour,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'client_id', p.client_id, 'hours_missing', p.hours_missing,
                'since', p.since, 'hours', p.hours)
                ORDER BY p.since, p.client_id), '[]'::jsonb)
     FROM per_client p) AS clients
