-- Seed "Client attribution success rate" for the run's data interval, in
-- percent; NULL (not a division by zero) when no event arrived.
-- Parameters: interval_start, interval_end.
SELECT round(count(*) FILTER (WHERE client_id IS NOT NULL) * 100.0 / nullif(count(*), 0), 2)
           AS attribution_rate_pct,
       count(*) AS total_events
FROM events_log
WHERE created_at >= %(interval_start)s::timestamptz
  AND created_at < %(interval_end)s::timestamptz
