-- Rows of one partition (or of a sample of its blocks), and how many retention may delete now.
-- {partition}: the partition table. Parameters: client_ids/cutoffs (per client,
-- rows processed before the cutoff are expired), billed_end (rows created or
-- exported at or after it are not yet billed and are kept).
SELECT
    count(*) AS total,
    count(*) FILTER (
        WHERE e.export_status = 'exported'
          AND e.processed_at < k.cutoff
          AND e.created_at < %(billed_end)s
          AND coalesce(e.export_hour, e.created_at) < %(billed_end)s
    ) AS deletable
FROM {partition} AS e {sample}
LEFT JOIN unnest(%(client_ids)s::text[], %(cutoffs)s::timestamptz[]) AS k (client_id, cutoff)
    ON k.client_id = e.client_id
