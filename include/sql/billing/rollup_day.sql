-- Billing rollup of one UTC day, from tables retention never touches:
--   ingest_counts   (rows loaded per file and client; '' = unattributed at load)
--   landing_files   (rows rejected per file, by the day the file was loaded)
--   export_runs     (succeeded exports whose interval starts on the day)
-- One row per active client or client with activity, plus the pseudo-row
-- client_id '_total' holding the day's totals and the figures that cannot be
-- attributed to a client (events_rejected, events_unattributed; NULL per client).
WITH bounds AS (
    SELECT (%(day)s::date)::timestamp AT TIME ZONE 'UTC' AS d0,
           (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC' AS d1
),
received AS (
    SELECT client_id, sum(rows_loaded)::bigint AS n
    FROM ingest_counts
    WHERE day = %(day)s::date
    GROUP BY client_id
),
exported AS (
    SELECT r.client_id,
           sum(coalesce(r.row_count, 0))::bigint AS n,
           sum(coalesce(r.bytes, 0))::bigint AS bytes,
           max(r.finished_at) AS last_at
    FROM export_runs AS r, bounds AS b
    WHERE r.status = 'succeeded'
      AND r.interval_start >= b.d0
      AND r.interval_start < b.d1
    GROUP BY r.client_id
),
rejected AS (
    SELECT coalesce(sum(f.rows_rejected), 0)::bigint AS n
    FROM landing_files AS f, bounds AS b
    WHERE coalesce(f.loaded_at, f.created_at) >= b.d0
      AND coalesce(f.loaded_at, f.created_at) < b.d1
),
billed AS (
    SELECT client_id FROM clients WHERE active
    UNION
    SELECT client_id FROM received WHERE client_id <> ''
    UNION
    SELECT client_id FROM exported
)
INSERT INTO billing_daily (
    client_id, day, events_received, events_rejected, events_unattributed,
    events_exported, bytes_exported, last_export_at, computed_at
)
SELECT p.client_id, %(day)s::date, coalesce(rc.n, 0), NULL, NULL,
       coalesce(ex.n, 0), coalesce(ex.bytes, 0), ex.last_at, now()
FROM billed AS p
LEFT JOIN received AS rc ON rc.client_id = p.client_id
LEFT JOIN exported AS ex ON ex.client_id = p.client_id
UNION ALL
SELECT '_total', %(day)s::date,
       (SELECT coalesce(sum(n), 0) FROM received)::bigint,
       (SELECT n FROM rejected),
       (SELECT coalesce(sum(n), 0) FROM received WHERE client_id = '')::bigint,
       (SELECT coalesce(sum(n), 0) FROM exported)::bigint,
       (SELECT coalesce(sum(bytes), 0) FROM exported)::bigint,
       (SELECT max(last_at) FROM exported),
       now()
