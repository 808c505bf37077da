-- delete_visitor_rows.sql restricted to the rows of given landing files loaded since
-- %(since)s (loads that were still running when the main delete ran: their rows were
-- not visible to it). created_at >= since keeps the scan to the newest partition(s).
DELETE FROM events_log AS e
WHERE e.created_at >= %(since)s
  AND e.file_id = ANY(%(file_ids)s::bigint[])
  AND e.visitor_id = ANY(%(visitors)s::text[])
  AND (e.client_id = %(client_id)s
       OR (e.client_id IS NULL AND e.site_id = ANY(%(sites)s::text[])))
RETURNING e.visitor_id, e.export_hour, e.file_id
