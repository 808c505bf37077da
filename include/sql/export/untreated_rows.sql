-- Rows of (client, hour) that a GDPR client must not receive as stored: the same
-- rows as select_rows.sql, of those the ones not yet given the GDPR treatment
-- (privacy_level <> 'gdpr': stored while the client was 'standard'). Read in the
-- export's snapshot before its files are written; treated in Python and written
-- back by treat_rows.sql in the same transaction (export/gdpr_outbound.py).
-- ip_text is the form the files hold (abbrev, as select_rows.sql), host_ip the address.
-- Parameters: client_id, hour_start, hour_end, claim.
SELECT id, created_at, event_id::text AS event_id, abbrev(ip_address) AS ip_text,
       host(ip_address) AS host_ip, raw_event_data::text AS raw_event_data
FROM events_log
WHERE client_id = %(client_id)s
  AND privacy_level <> 'gdpr'
  AND (export_hour = %(hour_start)s
       OR (%(claim)s <> 'none'
           AND export_hour IS NULL
           AND export_status = 'pending'
           AND created_at < %(hour_end)s
           AND (%(claim)s = 'through' OR created_at >= %(hour_start)s)));
