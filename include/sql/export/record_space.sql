-- An export of the client is about to write into this bucket + prefix: remember it
-- (export_spaces, migration 0070), so no other client is ever given a space holding
-- these objects. Written at most once an hour per client.
-- Parameters: client_id, bucket, prefix.
INSERT INTO export_spaces AS s (client_id, bucket, prefix)
VALUES (%(client_id)s, %(bucket)s, %(prefix)s)
ON CONFLICT (client_id, bucket, prefix) DO UPDATE
SET last_used_at = now()
WHERE s.last_used_at < now() - interval '1 hour';
