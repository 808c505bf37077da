-- A file that cannot be read: recorded before its object is moved to quarantine/.
UPDATE landing_files
SET status = 'quarantined',
    error = %(error)s,
    rows_loaded = 0,
    processed_key = %(quarantine_key)s,
    lease_expires_at = now() + make_interval(mins => %(lease_minutes)s)
WHERE file_id = %(file_id)s AND claimed_by = %(token)s AND status = 'claimed'
RETURNING file_id
