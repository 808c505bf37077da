-- Take back audit rows recorded for a write that then failed (it will be recorded again).
DELETE FROM gdpr_erasure_audit
WHERE audit_id = ANY(%(audit_ids)s::bigint[])
