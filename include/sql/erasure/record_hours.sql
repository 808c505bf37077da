-- The export hours that held a request's deleted rows (recorded in the delete's
-- transaction): the backup folders to purge. An hour that gets more rows later
-- (a raced load) is purged again.
INSERT INTO gdpr_erasure_hours (request_id, export_hour, rows_deleted)
SELECT x.request_id, x.export_hour, x.n
FROM unnest(%(request_ids)s::bigint[], %(hours)s::timestamptz[], %(rows)s::bigint[])
     AS x (request_id, export_hour, n)
ON CONFLICT (request_id, export_hour) DO UPDATE
SET rows_deleted = gdpr_erasure_hours.rows_deleted + EXCLUDED.rows_deleted,
    purged_at = NULL
