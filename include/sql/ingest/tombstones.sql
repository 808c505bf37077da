-- The erasure tombstones of the clients a file may be attributed to (contract §6.5):
-- (client, sha256(client_id || chr(31) || visitor_id), erased_through, request). Read once
-- per claimed file; no row (the normal case) turns the check off for the whole file.
SELECT client_id, visitor_digest, erased_through, request_id
FROM gdpr_erasure_tombstones
WHERE client_id = ANY(%(clients)s::text[])
