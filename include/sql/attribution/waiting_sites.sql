-- Sites of unattributed pending events created in the last %(lookback_hours)s
-- hours (partial index events_log_unattributed_idx, recent partitions only),
-- with how many events each carries, minus the sites the service answered
-- recently (negative cache younger than %(ttl_minutes)s minutes). The caller
-- normalises the sites and drops those client_domains already matches.
SELECT e.site_id, count(*) AS events
FROM events_log AS e
WHERE e.client_id IS NULL
  AND e.site_id IS NOT NULL
  AND e.export_status = 'pending'
  AND e.created_at >= now() - make_interval(hours => %(lookback_hours)s::int)
  AND NOT EXISTS (
      SELECT 1
      FROM attribution_negative_cache AS n
      WHERE n.site = e.site_id
        AND n.checked_at > now() - make_interval(mins => %(ttl_minutes)s::int)
  )
GROUP BY e.site_id
