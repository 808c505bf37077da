-- Mappings the service gave more than %(refresh_minutes)s minutes ago, oldest
-- first, at most %(limit)s: asked again so that a domain the service moved to
-- another client (or no longer knows) is noticed. Manual mappings are never
-- asked about. Sites in the negative cache (younger than %(ttl_minutes)s
-- minutes) wait for it to expire.
SELECT d.domain
FROM client_domains AS d
WHERE d.source = 'pixel_management'
  AND (d.resolved_at IS NULL OR d.resolved_at < now() - make_interval(mins => %(refresh_minutes)s::int))
  AND NOT EXISTS (
      SELECT 1
      FROM attribution_negative_cache AS n
      WHERE n.site = d.domain
        AND n.checked_at > now() - make_interval(mins => %(ttl_minutes)s::int)
  )
ORDER BY d.resolved_at NULLS FIRST, d.domain
LIMIT %(limit)s
