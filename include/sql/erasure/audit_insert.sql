-- Record one copy a request (or several requests of one client) touched: one audit row
-- per request. Parameters: request_ids, lines (lines removed per request, same order),
-- bucket (NULL: the events database), key, action, detail.
INSERT INTO gdpr_erasure_audit (request_id, bucket, key, action, lines_removed, detail)
SELECT x.request_id, %(bucket)s, %(key)s, %(action)s, x.lines, %(detail)s
FROM unnest(%(request_ids)s::bigint[], %(lines)s::bigint[]) AS x (request_id, lines)
RETURNING audit_id
