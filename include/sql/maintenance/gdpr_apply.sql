-- Write the treated rows staged in gdpr_treated back to events_log.
UPDATE events_log AS e
SET client_id = t.client_id,
    privacy_level = 'gdpr',
    ip_address = t.ip_address,
    raw_event_data = t.raw_event_data
FROM gdpr_treated AS t
WHERE e.id = t.id
  AND e.created_at = t.created_at
