-- Requests carried out in full: done. The visitor id is cleared (its digest stays);
-- objects_rewritten / client_objects summarise the audit trail.
UPDATE gdpr_erasure_requests AS r
SET status = 'done',
    processed_at = now(),
    next_attempt_at = NULL,
    error = NULL,
    visitor_id = NULL,
    rows_deleted = coalesce(r.rows_deleted, 0),
    objects_rewritten = (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'key', 's3://' || a.bucket || '/' || a.key, 'action', a.action,
                   'rows_removed', a.lines_removed) ORDER BY a.audit_id), '[]'::jsonb)
        FROM gdpr_erasure_audit AS a
        WHERE a.request_id = r.request_id AND a.action IN ('rewritten', 'removed')),
    client_objects = (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'key', 's3://' || a.bucket || '/' || a.key, 'rows', a.lines_removed)
                   ORDER BY a.audit_id), '[]'::jsonb)
        FROM gdpr_erasure_audit AS a
        WHERE a.request_id = r.request_id AND a.action = 'listed_for_client')
WHERE r.request_id = ANY(%(request_ids)s::bigint[])
