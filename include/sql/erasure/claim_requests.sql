-- Take every request still to do (pending, or processing after a crashed
-- attempt): mark it processing and count the attempt.
UPDATE gdpr_erasure_requests
SET status = 'processing',
    attempts = attempts + 1,
    started_at = coalesce(started_at, now()),
    error = NULL
WHERE status IN ('pending', 'processing')
RETURNING request_id, client_id, visitor_id
