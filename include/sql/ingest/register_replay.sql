-- Register and claim a replay object (events_replay), naming the original file.
-- A retry of the same run meets its own row (same key and ETag): the claim is
-- renewed when it is still this run's, the row returned either way.
INSERT INTO landing_files AS lf
    (bucket, key, etag, size_bytes, last_modified, status,
     claimed_by, claimed_at, lease_expires_at, attempts, replay_of)
VALUES (%(bucket)s, %(key)s, %(etag)s, %(size_bytes)s, %(last_modified)s, 'claimed',
        %(token)s, now(), now() + make_interval(mins => %(lease_minutes)s), 0, %(replay_of)s)
ON CONFLICT (bucket, key, etag) DO UPDATE
SET lease_expires_at = CASE
        WHEN lf.claimed_by = excluded.claimed_by AND lf.moved_at IS NULL THEN excluded.lease_expires_at
        ELSE lf.lease_expires_at
    END
RETURNING lf.file_id, lf.key, lf.etag, lf.size_bytes, lf.status, lf.attempts
