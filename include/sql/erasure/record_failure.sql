-- A pass failed: count it, back off (retry_base_minutes doubling per failure, at most
-- retry_max_minutes), and give up ('failed') when it cannot help or after max_failures.
-- A failed request stays visible: check_erasure_requests fails naming it.
UPDATE gdpr_erasure_requests
SET failures = failures + 1,
    status = CASE WHEN %(permanent)s OR failures + 1 >= %(max_failures)s THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + least(
        make_interval(mins => %(retry_base_minutes)s::int) * power(2, failures),
        make_interval(mins => %(retry_max_minutes)s::int)),
    error = %(error)s
WHERE request_id = ANY(%(request_ids)s::bigint[])
RETURNING request_id, status, failures, next_attempt_at
