-- The backup hours the visitor index (backup_visitor_hours) names for the requests'
-- visitors (client, digest), recorded with the hours of the deleted rows, in the
-- delete's transaction: the backup folders to purge are the union of both, and hours
-- whose rows retention already deleted are among them. rows_deleted 0: known from the
-- index only. An hour already recorded is left as it is (purged or not).
INSERT INTO gdpr_erasure_hours (request_id, export_hour, rows_deleted)
SELECT x.request_id, v.export_hour, 0
FROM unnest(%(digests)s::bytea[], %(request_ids)s::bigint[]) AS x (digest, request_id)
JOIN backup_visitor_hours AS v
  ON v.client_id = %(client_id)s
 AND v.visitor_digest = x.digest
ON CONFLICT (request_id, export_hour) DO NOTHING
RETURNING request_id, export_hour
