-- Store the GDPR treatment the export applied on the way out (untreated_rows.sql),
-- in the export's transaction: the stored row then holds what the files hold.
-- Parameters: ids, created_at, ips (inet text or NULL), raws (JSON text), as arrays.
UPDATE events_log AS e
SET privacy_level = 'gdpr',
    ip_address = t.ip,
    raw_event_data = t.raw
FROM unnest(%(ids)s::bigint[], %(created_at)s::timestamptz[], %(ips)s::inet[], %(raws)s::json[])
     AS t (id, created_at, ip, raw)
WHERE e.id = t.id
  AND e.created_at = t.created_at;
