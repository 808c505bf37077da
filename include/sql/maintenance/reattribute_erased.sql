-- Before unattributed rows get their client (sites %(sites)s -> clients %(clients)s):
-- rows of a visitor that client had erased (gdpr_erasure_tombstones: client and
-- sha256(client_id || chr(31) || visitor_id)) that existed or happened by the erasure
-- (created_at or "timestamp" <= erased_through) are deleted instead of attributed -
-- the erasure covers them (contract §6.5) - and added to the request's audit trail.
-- Returns the rows deleted per client.
WITH m AS (
    SELECT * FROM unnest(%(sites)s::text[], %(clients)s::text[]) AS m (site_id, client_id)
),
gone AS (
    DELETE FROM events_log AS e
    USING m, gdpr_erasure_tombstones AS t
    WHERE e.client_id IS NULL
      AND e.site_id = m.site_id
      AND e.visitor_id IS NOT NULL
      AND t.client_id = m.client_id
      AND t.visitor_digest = sha256(convert_to(m.client_id || chr(31) || e.visitor_id, 'UTF8'))
      AND (e.created_at <= t.erased_through OR e."timestamp" <= t.erased_through)
    RETURNING t.request_id, m.client_id
),
per_request AS (
    SELECT request_id, client_id, count(*) AS n FROM gone GROUP BY request_id, client_id
),
audit AS (
    INSERT INTO gdpr_erasure_audit (request_id, bucket, key, action, lines_removed, detail)
    SELECT p.request_id, NULL, 'events_log', 'rows_deleted', p.n,
           're-attribution: rows of the erased visitor on a site mapped to the client since'
    FROM per_request AS p
    JOIN gdpr_erasure_requests AS r ON r.request_id = p.request_id
)
SELECT client_id, sum(n)::bigint AS n
FROM per_request
GROUP BY client_id
