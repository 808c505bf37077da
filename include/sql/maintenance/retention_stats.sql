-- Rows of one partition (or of a sample of its blocks), how many retention may
-- delete now, and how many it may delete one day later (to defer a partition
-- that becomes a cheap swap tomorrow instead of batch-deleting part of it today).
-- {partition}: the partition table; {sample}: empty or a TABLESAMPLE clause.
-- Parameters: client_ids/cutoffs (per client, rows processed before the cutoff
-- are expired), billed_end (rows created or exported at or after it are kept).
-- Only exported rows of a published export hour count, and archived rows created
-- before archived_cutoff (retention_any_deletable.sql).
SELECT
    count(*) AS total,
    count(*) FILTER (
        WHERE (e.export_status = 'exported'
               AND e.processed_at < k.cutoff
               AND e.created_at < %(billed_end)s
               AND e.export_hour < %(billed_end)s
               AND r.client_id IS NOT NULL)
           OR (e.export_status = 'archived'
               AND e.created_at < %(archived_cutoff)s::timestamptz
               AND e.created_at < %(billed_end)s)
    ) AS deletable,
    count(*) FILTER (
        WHERE (e.export_status = 'exported'
               AND e.processed_at < k.cutoff + interval '1 day'
               AND e.created_at < %(billed_end)s + interval '1 day'
               AND e.export_hour < %(billed_end)s + interval '1 day'
               AND r.client_id IS NOT NULL)
           OR (e.export_status = 'archived'
               AND e.created_at < %(archived_cutoff)s::timestamptz + interval '1 day'
               AND e.created_at < %(billed_end)s + interval '1 day')
    ) AS deletable_next_day
FROM {partition} AS e {sample}
LEFT JOIN unnest(%(client_ids)s::text[], %(cutoffs)s::timestamptz[]) AS k (client_id, cutoff)
    ON k.client_id = e.client_id
LEFT JOIN export_runs AS r
    ON r.client_id = e.client_id
   AND r.interval_start = e.export_hour
   AND r.status = 'succeeded'
