-- In the load's transaction: one audit row per erasure request whose visitor's lines the
-- file held and ingest dropped (key = the landing key). Parameters: request_ids, lines
-- (lines dropped per request, same order), bucket, key, detail. A request no longer on
-- record (its row deleted) is left out.
INSERT INTO gdpr_erasure_audit (request_id, bucket, key, action, lines_removed, detail)
SELECT x.request_id, %(bucket)s, %(key)s, 'lines_dropped_at_ingest', x.lines, %(detail)s
FROM unnest(%(request_ids)s::bigint[], %(lines)s::bigint[]) AS x (request_id, lines)
JOIN gdpr_erasure_requests AS r ON r.request_id = x.request_id
