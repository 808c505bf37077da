-- Requests that are not finished but did not fail (an export or a load raced them, the
-- landing bucket was busy): pending again, due after %(minutes)s minutes, the reason kept.
UPDATE gdpr_erasure_requests
SET status = 'pending',
    next_attempt_at = now() + make_interval(mins => %(minutes)s::int),
    error = %(note)s
WHERE request_id = ANY(%(request_ids)s::bigint[])
