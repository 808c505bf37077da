-- Delete the given visitors' events of one client: attributed to it, or not yet
-- attributed and on one of its sites (%(sites)s: unattributed site_ids the client's
-- domains match by the attribution rule), whatever their status (pending, exported,
-- archived). One row per deleted event: its visitor, export hour (the backup folder
-- that holds it, NULL when never exported) and landing file.
DELETE FROM events_log AS e
WHERE e.visitor_id = ANY(%(visitors)s::text[])
  AND (e.client_id = %(client_id)s
       OR (e.client_id IS NULL AND e.site_id = ANY(%(sites)s::text[])))
RETURNING e.visitor_id, e.export_hour, e.file_id
