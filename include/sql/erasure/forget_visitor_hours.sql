-- Once a request's backup hours are purged: delete its visitor's rows of the visitor
-- index (backup_visitor_hours) for those hours (they name hours that no longer hold the
-- visitor; the tombstone keeps the digest). An hour not purged keeps its row.
DELETE FROM backup_visitor_hours AS v
USING gdpr_erasure_requests AS r, gdpr_erasure_hours AS h
WHERE r.request_id = ANY(%(request_ids)s::bigint[])
  AND h.request_id = r.request_id
  AND h.purged_at IS NOT NULL
  AND v.client_id = r.client_id
  AND v.visitor_digest = r.visitor_digest
  AND v.export_hour = h.export_hour
RETURNING r.request_id
