-- The audit lists a request already holds (recorded by an earlier, interrupted attempt).
SELECT objects_rewritten, client_objects
FROM gdpr_erasure_requests
WHERE request_id = %(request_id)s
