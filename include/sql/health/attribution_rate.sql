-- Health check "check_attribution_rate" (docs/runbook.md#check_attribution_rate).
-- Attribution rate of the events loaded in the run's data interval
-- (created_at in [interval_start, interval_end)) and the unknown site_ids
-- carrying the most events. ok is false when at least min_events events
-- arrived and fewer than min_rate of them have a client_id.
-- Parameters: interval_start, interval_end, min_rate (0..1), min_events.
WITH interval_rows AS (
    SELECT client_id, site_id, created_at
    FROM events_log
    WHERE created_at >= %(interval_start)s::timestamptz
      AND created_at < %(interval_end)s::timestamptz
),
totals AS (
    SELECT count(*) AS total_events, count(client_id) AS attributed_events
    FROM interval_rows
),
unknown_sites AS (
    SELECT coalesce(site_id, '(none)') AS site_id, count(*) AS events, min(created_at) AS first_seen
    FROM interval_rows
    WHERE client_id IS NULL
    GROUP BY 1
    ORDER BY events DESC, site_id
    LIMIT 5
)
SELECT
    t.total_events,
    t.attributed_events,
    CASE WHEN t.total_events > 0 THEN round(t.attributed_events::numeric / t.total_events, 4) END
        AS attribution_rate,
    (t.total_events < %(min_events)s::bigint
        OR t.attributed_events >= %(min_rate)s::numeric * t.total_events) AS ok,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'site_id', u.site_id, 'events', u.events, 'first_seen', u.first_seen)
                ORDER BY u.events DESC, u.site_id), '[]'::jsonb)
     FROM unknown_sites u) AS top_unknown
FROM totals t
