-- Rows of {partition} (one partition of events_log, named by the caller) that belong
-- to one of the GDPR clients %(client_ids)s, were created at or after that client's
-- %(since)s ('-infinity' for a full pass: rows created before it were covered by the
-- client's last completed sweep, see migration 0120), and still hold a raw IP (in
-- ip_address, in raw_event_data's top-level ip_address, or in any other string value
-- of raw_event_data at any depth: contract §6.3) or are not marked gdpr; after id
-- %(after_id)s, in id order; locked for the treatment that follows in the same
-- transaction.
-- An IPv6 address that embeds an IPv4 one (IPv4-mapped ::ffff:0:0/96, 6to4
-- 2002::/16, Teredo 2001::/32, NAT64 64:ff9b::/96) is never a treated value:
-- the treatment turns it into the IPv4 /24.
-- Nested values: a cheap regex over the stored text first finds rows with a string
-- value that looks like an untreated address (an IPv4 whose last octet is not 0, an
-- IPv6 text not ending in "::", an embedding prefix) or a JSON escape of an address
-- character; only those are decoded (jsonb_path_query) and each string value tested
-- as Python's treatment would (the whole string, surrounding whitespace aside).
SELECT e.id, e.created_at, e.client_id, host(e.ip_address), e.raw_event_data::text
FROM {partition} AS e
JOIN unnest(%(client_ids)s::text[], %(since)s::timestamptz[]) AS k (client_id, since)
    ON k.client_id = e.client_id
WHERE e.id > %(after_id)s
  AND e.created_at >= k.since
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
     OR (e.raw_event_data::text ~ ('[:,[][[:space:]]*"[[:space:]]*('
                                   || '[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.([1-9][0-9]*|0[0-9]+)'
                                   || '|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*[0-9A-Fa-f.]'
                                   || '|(2002|2001:0*|0*64:[Ff][Ff]9[Bb]):[0-9A-Fa-f:.]*'
                                   || ')[[:space:]]*"'
                                   || '|\\u00(2[eE]|3[0-9aA]|4[1-6]|6[1-6])')
         AND EXISTS (
             SELECT 1
             FROM jsonb_path_query(
                      CASE WHEN pg_input_is_valid(e.raw_event_data::text, 'jsonb')
                           THEN e.raw_event_data::jsonb END,
                      'strict $.**') AS v (value)
             CROSS JOIN LATERAL (SELECT btrim(v.value #>> '{}', E' \t\r\n') AS s) AS t
             WHERE jsonb_typeof(v.value) = 'string'
               AND length(v.value #>> '{}') <= 64
               AND t.s ~ '^[0-9A-Fa-f:.]*[.:][0-9A-Fa-f:.]*$'
               AND t.s !~ '(^|[.:])0[0-9]+(\.|$)'  -- a dotted number with a leading zero: not an IP literal
               AND CASE
                     WHEN pg_input_is_valid(t.s, 'inet')
                     THEN host(t.s::inet) <> host(network(set_masklen(
                              t.s::inet, CASE family(t.s::inet) WHEN 4 THEN 24 ELSE 48 END)))
                          OR t.s::inet <<= ANY ('{::ffff:0:0/96,2002::/16,2001::/32,64:ff9b::/96}'::inet[])
                     ELSE false
                   END))
  )
ORDER BY e.id
LIMIT %(batch)s
FOR UPDATE OF e
