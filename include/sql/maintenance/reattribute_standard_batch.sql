-- Give up to %(batch)s unattributed pending rows of the matched sites their
-- (standard-privacy) client. Returns the client of each row changed.
-- The client's privacy level is checked again here, not taken from when the step
-- started: only clients still 'standard' now, their row locked FOR SHARE until this
-- statement commits. A switch to gdpr (an UPDATE of clients: FOR NO KEY UPDATE, which
-- FOR KEY SHARE would not block) either committed before - the client is not taken
-- (READ COMMITTED rechecks the updated row) and its rows are left for the gdpr path
-- (maintenance.reattribution) - or waits for this commit, so the full pass of the sweep
-- that follows the switch sees these rows (old rows of a client attributed 'standard'
-- after that pass would never be read again by the incremental sweep).
WITH m AS (
    SELECT * FROM unnest(%(sites)s::text[], %(clients)s::text[]) AS m (site_id, client_id)
),
still_standard AS (
    SELECT c.client_id
    FROM clients AS c
    WHERE c.client_id IN (SELECT m.client_id FROM m)
      AND c.privacy_level = 'standard'
    FOR SHARE OF c
),
picked AS (
    SELECT e.id, e.created_at, m.client_id
    FROM events_log AS e
    JOIN m ON m.site_id = e.site_id
    JOIN still_standard AS s ON s.client_id = m.client_id
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
