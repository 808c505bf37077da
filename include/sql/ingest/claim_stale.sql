-- Take over registry rows whose claim expired before the object reached its
-- final place: a load that crashed ('claimed'), or a move to processed/ or
-- quarantine/ that did not finish ('loaded' / 'quarantined', moved_at NULL).
-- SKIP LOCKED: a row a load transaction still holds is not touched.
-- attempts is NOT counted here: a claim that only waited (a backlog, a batch behind
-- a file that killed its worker) is no failure; start_load.sql counts loads that start.
WITH stale AS (
    SELECT file_id
    FROM landing_files
    WHERE bucket = %(bucket)s
      AND moved_at IS NULL
      AND status IN ('claimed', 'loaded', 'quarantined')
      AND lease_expires_at < now()
    ORDER BY claimed_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE landing_files lf
SET claimed_by = %(token)s,
    claimed_at = now(),
    lease_expires_at = now() + make_interval(mins => %(lease_minutes)s)
FROM stale
WHERE lf.file_id = stale.file_id
RETURNING lf.file_id, lf.key, lf.etag, lf.size_bytes, lf.status, lf.attempts
