-- Bookkeeping that no longer matters: sync runs older than %(keep_days)s days,
-- negative cache entries not refreshed for as long (and expired), and
-- acknowledged problems older than 90 days.
WITH runs AS (
    DELETE FROM attribution_sync_runs
    WHERE started_at < now() - make_interval(days => %(keep_days)s::int)
    RETURNING 1
),
cache AS (
    DELETE FROM attribution_negative_cache
    WHERE checked_at < now() - greatest(make_interval(days => %(keep_days)s::int),
                                        make_interval(mins => %(ttl_minutes)s::int))
    RETURNING 1
),
problems AS (
    DELETE FROM attribution_sync_problems
    WHERE acknowledged_at < now() - interval '90 days'
    RETURNING 1
)
SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM cache), (SELECT count(*) FROM problems)
