-- The clients a run exports and the work each has, to pack them into groups
-- (export/groups.py): the rows a run of theirs would take (unclaimed rows created
-- before the last hour's end, through events_log_unclaimed_idx alone; archived ones
-- are counted too: a bound) plus the rows already in the run's hours, and whether
-- the client's latest earlier hour (in the 24 hours before) failed.
-- Parameters: clients (NULL: every active client), first_start, last_end, hour_starts.
WITH chosen AS (
    SELECT client_id
    FROM clients
    WHERE CASE WHEN %(clients)s::text[] IS NULL THEN active
               ELSE client_id = ANY (%(clients)s::text[]) END
),
unclaimed AS (
    SELECT e.client_id, count(*) AS n
    FROM events_log AS e
    WHERE e.export_hour IS NULL
      AND e.client_id IS NOT NULL
      AND e.created_at < %(last_end)s
    GROUP BY e.client_id
),
in_hours AS (
    SELECT r.client_id, sum(coalesce(r.committed_rows, r.row_count, 0)) AS n
    FROM export_runs AS r
    WHERE r.interval_start = ANY (%(hour_starts)s::timestamptz[])
    GROUP BY r.client_id
),
latest AS (
    SELECT DISTINCT ON (r.client_id) r.client_id, r.status
    FROM export_runs AS r
    WHERE r.interval_start < %(first_start)s
      AND r.interval_start >= %(first_start)s::timestamptz - interval '24 hours'
    ORDER BY r.client_id, r.interval_start DESC
)
SELECT c.client_id,
       coalesce(u.n, 0) + coalesce(h.n, 0) AS rows,
       coalesce(l.status = 'failed', false) AS suspect
FROM chosen AS c
LEFT JOIN unclaimed AS u USING (client_id)
LEFT JOIN in_hours AS h USING (client_id)
LEFT JOIN latest AS l USING (client_id)
ORDER BY c.client_id;
