-- Backfill of the backup visitor index (0100_backup_visitor_index) from the rows the
-- export had already written into backup folders before the index existed. Without it,
-- those hours would be known to an erasure request only while their rows are still in
-- events_log; once retention deleted them, only the request's whole_backup pass (every
-- backup folder of the client) would reach them. Run once, before the next retention
-- can delete those rows; after it, whole_backup is needed only for hours whose rows
-- retention had deleted before this migration ran.
-- One pass over the exported rows still stored (a scan of events_log: minutes on a
-- large table, once). Idempotent: ON CONFLICT DO NOTHING; the join on clients skips
-- rows of clients no longer configured (the index's foreign key).
INSERT INTO backup_visitor_hours (client_id, visitor_digest, export_hour)
SELECT DISTINCT e.client_id,
       sha256(convert_to(e.client_id || chr(31) || e.visitor_id, 'UTF8')),
       e.export_hour
FROM events_log AS e
JOIN clients AS c ON c.client_id = e.client_id
WHERE e.export_status = 'exported'
  AND e.export_hour IS NOT NULL
  AND e.visitor_id IS NOT NULL
ON CONFLICT DO NOTHING;
