-- Moves applied in the last %(window_minutes)s minutes whose mapping still
-- points at the new client: the old client's events of the moved domain that
-- are not exported and not assigned to an export hour (pending,
-- export_hour NULL) lose their client, so re-attribution (the next task) gives
-- them to the new client, with the GDPR treatment when it is a GDPR client.
-- Only sites whose nearest listed domain is the moved one (a sub-domain listed
-- on its own keeps its client). Exported, archived and claimed rows are never
-- touched. Repeating it within the window catches rows of loads that were
-- attributed with the old mapping while the move committed.
-- Returns, per move, how many rows were released.
WITH moves AS (
    SELECT p.problem_id, p.domain, p.current_client_id AS old_client_id
    FROM attribution_sync_problems AS p
    JOIN client_domains AS d
      ON d.domain = p.domain
     AND d.client_id = p.answered_client_id
    WHERE p.kind = 'move'
      AND p.applied
      AND p.applied_at >= now() - make_interval(mins => %(window_minutes)s::int)
),
candidates AS (
    SELECT DISTINCT m.problem_id, m.domain, m.old_client_id, e.site_id
    FROM moves AS m
    JOIN events_log AS e
      ON e.client_id = m.old_client_id
    WHERE e.export_hour IS NULL
      AND e.export_status = 'pending'
      AND (e.site_id = m.domain OR right(e.site_id, length(m.domain) + 1) = '.' || m.domain)
),
nearest AS (
    SELECT DISTINCT ON (c.problem_id, c.site_id)
           c.problem_id, c.domain, c.old_client_id, c.site_id, d.domain AS listed
    FROM candidates AS c
    CROSS JOIN LATERAL generate_series(1, cardinality(string_to_array(c.site_id, '.'))) AS g (depth)
    JOIN client_domains AS d
      ON d.domain = array_to_string((string_to_array(c.site_id, '.'))[g.depth:], '.')
    ORDER BY c.problem_id, c.site_id, g.depth
),
released AS (
    UPDATE events_log AS e
    SET client_id = NULL
    FROM nearest AS n
    WHERE n.listed = n.domain
      AND e.site_id = n.site_id
      AND e.client_id = n.old_client_id
      AND e.export_hour IS NULL
      AND e.export_status = 'pending'
    RETURNING n.problem_id
),
per_move AS (
    SELECT problem_id, count(*) AS n FROM released GROUP BY problem_id
)
UPDATE attribution_sync_problems AS p
SET rows_released = p.rows_released + r.n
FROM per_move AS r
WHERE p.problem_id = r.problem_id
RETURNING p.problem_id, p.domain, p.current_client_id, p.answered_client_id, r.n
