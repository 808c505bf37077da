-- Export hours of the requests whose backup folder still has to be purged.
SELECT DISTINCT export_hour
FROM gdpr_erasure_hours
WHERE request_id = ANY(%(request_ids)s::bigint[])
  AND purged_at IS NULL
ORDER BY export_hour
