-- The most attempts among a client's requests (they fail together).
SELECT max(attempts)
FROM gdpr_erasure_requests
WHERE request_id = ANY(%(request_ids)s::bigint[])
