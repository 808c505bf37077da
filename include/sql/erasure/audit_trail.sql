-- One request's audit trail, oldest first (what the task log prints; the view
-- gdpr_erasure_audit_trail gives the same per request with the request's fields).
SELECT at, action, bucket, key, lines_removed, detail
FROM gdpr_erasure_audit
WHERE request_id = %(request_id)s
ORDER BY audit_id
