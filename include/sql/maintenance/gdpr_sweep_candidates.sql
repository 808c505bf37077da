-- Rows of one GDPR client that still hold a raw IP (in ip_address or in
-- raw_event_data) or are not marked gdpr, after id %(after_id)s, in id order;
-- locked for the treatment that follows in the same transaction.
-- An IPv6 address that embeds an IPv4 one (IPv4-mapped ::ffff:0:0/96, 6to4
-- 2002::/16, Teredo 2001::/32, NAT64 64:ff9b::/96) is never a treated value:
-- the treatment turns it into the IPv4 /24.
SELECT e.id, e.created_at, e.client_id, host(e.ip_address), e.raw_event_data::text
FROM events_log AS e
WHERE e.client_id = %(client_id)s
  AND e.id > %(after_id)s
  AND (
        e.privacy_level <> 'gdpr'
     OR (e.ip_address IS NOT NULL
         AND (host(e.ip_address) <> host(network(set_masklen(
                  e.ip_address, CASE family(e.ip_address) WHEN 4 THEN 24 ELSE 48 END)))
              OR e.ip_address <<= ANY ('{::ffff:0:0/96,2002::/16,2001::/32,64:ff9b::/96}'::inet[])))
     OR (json_typeof(e.raw_event_data -> 'ip_address') = 'string'
         AND CASE
               WHEN pg_input_is_valid(e.raw_event_data ->> 'ip_address', 'inet')
               THEN host((e.raw_event_data ->> 'ip_address')::inet)
                    <> host(network(set_masklen((e.raw_event_data ->> 'ip_address')::inet,
                         CASE family((e.raw_event_data ->> 'ip_address')::inet) WHEN 4 THEN 24 ELSE 48 END)))
                    OR (e.raw_event_data ->> 'ip_address')::inet
                       <<= ANY ('{::ffff:0:0/96,2002::/16,2001::/32,64:ff9b::/96}'::inet[])
               ELSE true
             END)
  )
ORDER BY e.id
LIMIT %(batch)s
FOR UPDATE OF e
