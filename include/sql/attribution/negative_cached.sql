-- Which of %(sites)s (normalised sites) are in the negative cache and younger
-- than %(ttl_minutes)s minutes.
SELECT n.site
FROM attribution_negative_cache AS n
WHERE n.site = ANY(%(sites)s::text[])
  AND n.checked_at > now() - make_interval(mins => %(ttl_minutes)s::int)
