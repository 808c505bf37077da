-- Seed "Export pipeline health": events created in the 24 hours before the
-- end of the run's data interval, per export_status, with their average age
-- in hours at the end of the interval.
-- Parameters: interval_end.
SELECT export_status,
       count(*) AS events,
       round(avg(extract(epoch FROM (%(interval_end)s::timestamptz - created_at)) / 3600)::numeric, 2)
           AS avg_age_hours
FROM events_log
WHERE created_at >= %(interval_end)s::timestamptz - interval '24 hours'
  AND created_at < %(interval_end)s::timestamptz
GROUP BY export_status
ORDER BY export_status
