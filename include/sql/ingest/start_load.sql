-- Renew this run's lease before a load starts (committed on its own, so other
-- runs see the renewed lease). No row: the claim was taken over or is done.
UPDATE landing_files
SET lease_expires_at = now() + make_interval(mins => %(lease_minutes)s),
    load_started_at = clock_timestamp()
WHERE file_id = %(file_id)s AND claimed_by = %(token)s
RETURNING status, attempts
