UPDATE gdpr_erasure_requests
SET landing_done_at = now()
WHERE request_id = ANY(%(request_ids)s::bigint[])
