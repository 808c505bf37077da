-- Give up to %(batch)s unattributed pending rows of the matched sites their
-- (standard-privacy) client. Returns the client of each row changed.
WITH m AS (
    SELECT * FROM unnest(%(sites)s::text[], %(clients)s::text[]) AS m (site_id, client_id)
),
picked AS (
    SELECT e.id, e.created_at, m.client_id
    FROM events_log AS e
    JOIN m ON m.site_id = e.site_id
    WHERE e.client_id IS NULL
      AND e.export_status = 'pending'
    LIMIT %(batch)s
    FOR UPDATE OF e
)
UPDATE events_log AS e
SET client_id = p.client_id,
    privacy_level = 'standard'
FROM picked AS p
WHERE e.id = p.id
  AND e.created_at = p.created_at
RETURNING e.client_id
