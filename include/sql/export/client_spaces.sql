-- Every export space in one bucket, for tenant isolation (export/keys.py check_no_overlap):
-- each client's configured prefix there, with when an export first wrote into it
-- (NULL: never), and every prefix a client exported into earlier and left
-- (export_spaces, migration 0070): its objects are still there.
-- Parameters: bucket.
SELECT c.client_id, c.export_bucket AS bucket, c.export_prefix AS prefix,
       s.first_used_at AS since, true AS current
FROM clients AS c
LEFT JOIN export_spaces AS s
  ON s.client_id = c.client_id
 AND s.bucket = c.export_bucket
 AND s.prefix = c.export_prefix
WHERE c.export_bucket = %(bucket)s
UNION ALL
SELECT s.client_id, s.bucket, s.prefix, s.first_used_at AS since, false AS current
FROM export_spaces AS s
LEFT JOIN clients AS c
  ON c.client_id = s.client_id
 AND c.export_bucket = s.bucket
 AND c.export_prefix = s.prefix
WHERE s.bucket = %(bucket)s
  AND c.client_id IS NULL
ORDER BY client_id, current DESC, prefix;
