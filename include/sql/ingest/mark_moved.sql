-- The object reached processed/ or quarantine/ (and left incoming/).
UPDATE landing_files
SET status = CASE WHEN status = 'loaded' THEN 'processed' ELSE status END,
    processed_key = %(dest_key)s,
    moved_at = clock_timestamp(),
    lease_expires_at = NULL,
    error = COALESCE(%(note)s, error)
WHERE file_id = %(file_id)s AND status IN ('loaded', 'quarantined') AND moved_at IS NULL
