-- Delete the events of the given visitors of one client; one row per deleted
-- event's visitor (counted per request by the caller, in the same transaction).
DELETE FROM events_log
WHERE client_id = %(client_id)s
  AND visitor_id = ANY(%(visitors)s::text[])
RETURNING visitor_id
