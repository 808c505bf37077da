-- The landing files a request's deleted rows came from (their processed/ objects hold
-- the visitor's lines); the request's landing pass is (re)opened.
WITH ins AS (
    INSERT INTO gdpr_erasure_files (request_id, file_id, rows_deleted)
    SELECT x.request_id, x.file_id, x.n
    FROM unnest(%(request_ids)s::bigint[], %(file_ids)s::bigint[], %(rows)s::bigint[])
         AS x (request_id, file_id, n)
    ON CONFLICT (request_id, file_id) DO UPDATE
    SET rows_deleted = gdpr_erasure_files.rows_deleted + EXCLUDED.rows_deleted
    RETURNING request_id
)
UPDATE gdpr_erasure_requests
SET landing_done_at = NULL
WHERE request_id IN (SELECT request_id FROM ins)
