-- Listed objects whose (key, etag) was already loaded or quarantined and moved:
-- an identical re-upload. They are deleted from incoming/, never loaded or copied
-- again: the copy the first upload left (processed_key) stays authoritative.
SELECT lf.file_id, lf.key, lf.etag, lf.size_bytes, lf.status, lf.attempts, lf.processed_key
FROM landing_files lf
JOIN unnest(%(keys)s::text[], %(etags)s::text[]) AS o(key, etag)
  ON lf.key = o.key AND lf.etag = o.etag
WHERE lf.bucket = %(bucket)s
  AND lf.moved_at IS NOT NULL
  AND lf.status IN ('processed', 'quarantined')
