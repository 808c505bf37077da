-- The requests' pass over every backup folder of their client is done.
UPDATE gdpr_erasure_requests
SET whole_backup_done_at = now()
WHERE request_id = ANY(%(request_ids)s::bigint[])
