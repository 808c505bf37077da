UPDATE gdpr_erasure_requests
SET status = %(status)s,
    processed_at = CASE WHEN %(status)s = 'done' THEN now() ELSE processed_at END,
    rows_deleted = coalesce(rows_deleted, 0),
    error = %(error)s
WHERE request_id = ANY(%(request_ids)s::bigint[])
