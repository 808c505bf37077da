-- Seed "Bulk insert verification": batches of the run's data interval whose
-- rows do not share one created_at (should be 0). Grouped by batch_id alone.
-- Parameters: interval_start, interval_end.
SELECT count(*) AS inconsistent_batches,
       coalesce(sum(events), 0) AS events_in_them
FROM (
    SELECT batch_id, count(*) AS events
    FROM events_log
    WHERE created_at >= %(interval_start)s::timestamptz
      AND created_at < %(interval_end)s::timestamptz
      AND batch_id IS NOT NULL
    GROUP BY batch_id
    HAVING min(created_at) <> max(created_at)
) b
