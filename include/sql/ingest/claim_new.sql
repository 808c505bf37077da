-- Register listed landing objects that have no registry row yet and claim them
-- for this run. A (bucket, key, etag) already registered is left alone here
-- (claim_stale.sql takes over expired claims); ON CONFLICT makes two runs that
-- list the same object at the same time register it once. attempts counts the
-- loads that started (start_load.sql), not claims: 0 until one starts.
INSERT INTO landing_files AS lf
    (bucket, key, etag, size_bytes, last_modified, status,
     claimed_by, claimed_at, lease_expires_at, attempts)
SELECT %(bucket)s, o.key, o.etag, o.size_bytes, o.last_modified, 'claimed',
       %(token)s, now(), now() + make_interval(mins => %(lease_minutes)s), 0
FROM unnest(%(keys)s::text[], %(etags)s::text[], %(sizes)s::bigint[], %(mtimes)s::timestamptz[])
     AS o(key, etag, size_bytes, last_modified)
ORDER BY o.last_modified, o.key
ON CONFLICT (bucket, key, etag) DO NOTHING
RETURNING lf.file_id, lf.key, lf.etag, lf.size_bytes, lf.status, lf.attempts
