UPDATE gdpr_erasure_requests
SET rows_deleted = coalesce(rows_deleted, 0) + %(n)s
WHERE request_id = %(request_id)s
