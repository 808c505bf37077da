-- Up to %(batch)s unattributed pending rows of sites now matched to GDPR
-- clients, locked for the treatment that follows in the same transaction.
WITH m AS (
    SELECT * FROM unnest(%(sites)s::text[], %(clients)s::text[]) AS m (site_id, client_id)
)
SELECT e.id, e.created_at, m.client_id, host(e.ip_address), e.raw_event_data::text
FROM events_log AS e
JOIN m ON m.site_id = e.site_id
WHERE e.client_id IS NULL
  AND e.export_status = 'pending'
LIMIT %(batch)s
FOR UPDATE OF e
