-- Tombstones of (client, visitor digest): re-attribution (and ingest) never give the
-- client rows of that visitor that existed or happened by erased_through.
INSERT INTO gdpr_erasure_tombstones (client_id, visitor_digest, erased_through, request_id)
SELECT %(client_id)s, x.digest, now(), x.request_id
FROM unnest(%(digests)s::bytea[], %(request_ids)s::bigint[]) AS x (digest, request_id)
ON CONFLICT (client_id, visitor_digest) DO UPDATE
SET erased_through = greatest(gdpr_erasure_tombstones.erased_through, EXCLUDED.erased_through),
    request_id = EXCLUDED.request_id
