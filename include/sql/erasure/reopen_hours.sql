-- Purge these hours of the requests again (an export raced the purge).
UPDATE gdpr_erasure_hours
SET purged_at = NULL
WHERE request_id = ANY(%(request_ids)s::bigint[])
  AND export_hour = ANY(%(hours)s::timestamptz[])
RETURNING export_hour
