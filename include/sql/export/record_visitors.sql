-- The visitors of the hour being committed, as digests, into the backup visitor index
-- (backup_visitor_hours): the hours an erasure request purges, still known once
-- retention has deleted the rows. %(visitors)s: the distinct visitor ids of the rows
-- the export wrote into the hour's parts (collected from the stream: the hour's rows
-- are not read a second time). Runs in the export's transaction, after the marking
-- (mark_rows.sql), so the hour's rows and its index commit together or not at all;
-- ON CONFLICT DO NOTHING: a re-run or retry of the hour adds its new visitors and keeps
-- every one already recorded.
-- Digest: sha256(client_id || chr(31) || visitor_id), as privacy/visitor_digest.py.
-- Inserted in digest order: neighbouring keys of the primary key, fewer pages touched.
-- Parameters: client_id, hour_start, visitors.
INSERT INTO backup_visitor_hours (client_id, visitor_digest, export_hour)
SELECT %(client_id)s::text,
       sha256(convert_to(%(client_id)s::text || chr(31) || v.visitor_id, 'UTF8')),
       %(hour_start)s::timestamptz
FROM unnest(%(visitors)s::text[]) AS v (visitor_id)
ORDER BY 2
ON CONFLICT DO NOTHING;
