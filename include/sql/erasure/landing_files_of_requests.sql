-- The landing files the requests' deleted rows came from, with where their object is:
-- processed/ once moved (status processed), still under incoming/ until then.
SELECT f.request_id, lf.file_id, lf.status, lf.processed_key, lf.moved_at
FROM gdpr_erasure_files AS f
JOIN landing_files AS lf ON lf.file_id = f.file_id
WHERE f.request_id = ANY(%(request_ids)s::bigint[])
  AND lf.bucket = %(bucket)s
ORDER BY lf.file_id
