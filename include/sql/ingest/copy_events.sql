COPY events_log (event_id, event_type, session_id, visitor_id, site_id, "timestamp", url, path,
                 user_agent, ip_address, client_id, batch_id, privacy_level, file_id, raw_event_data)
FROM STDIN
