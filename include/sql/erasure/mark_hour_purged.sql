UPDATE gdpr_erasure_hours
SET purged_at = now()
WHERE request_id = ANY(%(request_ids)s::bigint[])
  AND export_hour = %(export_hour)s
