-- Exported columns of (client, hour), as text for COPY ... (FORMAT csv).
-- Timestamps are rendered as UTC wall-clock (the session's DateStyle is ISO),
-- ip_address in inet's output form ('1.2.3.4', '2001:db8::1', '1.2.3.0/24'),
-- raw_event_data as its JSON text.
SELECT
    event_id::text,
    event_type,
    session_id,
    visitor_id,
    site_id,
    ("timestamp" AT TIME ZONE 'UTC'),
    url,
    path,
    user_agent,
    ip_address,
    raw_event_data::text,
    (created_at AT TIME ZONE 'UTC'),
    batch_id,
    client_id
FROM events_log
WHERE client_id = %(client_id)s
  AND export_hour = %(hour_start)s
ORDER BY created_at, id
