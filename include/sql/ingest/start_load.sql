-- Renew this run's lease before a load starts (committed on its own, so other
-- runs see the renewed lease). No row: the claim was taken over or is done.
-- A 'claimed' file's load starts here: attempts counts the claims under which a
-- load started (once per claim: an Airflow retry of the same claim, which keeps
-- claimed_at, does not count again), so only loads that really began and did not
-- finish lead to 'repeated_failure'.
UPDATE landing_files
SET lease_expires_at = now() + make_interval(mins => %(lease_minutes)s),
    attempts = attempts + CASE
        WHEN status = 'claimed' AND (load_started_at IS NULL OR load_started_at < claimed_at) THEN 1
        ELSE 0
    END,
    load_started_at = clock_timestamp()
WHERE file_id = %(file_id)s AND claimed_by = %(token)s
RETURNING status, attempts
