-- Distinct sites of the visitors' unattributed events (pending or archived): the
-- caller keeps those the client's domains match (maintenance/match_domains.sql).
SELECT DISTINCT site_id
FROM events_log
WHERE client_id IS NULL
  AND site_id IS NOT NULL
  AND visitor_id = ANY(%(visitors)s::text[])
