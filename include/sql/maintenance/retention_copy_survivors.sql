-- Copy the rows retention keeps (pending, archived but not old enough, not yet
-- expired, not yet billed, unknown client, export hour not published) from
-- {partition} into {target}. The complement of retention_any_deletable.sql's rule.
INSERT INTO {target}
SELECT e.*
FROM {partition} AS e
LEFT JOIN unnest(%(client_ids)s::text[], %(cutoffs)s::timestamptz[]) AS k (client_id, cutoff)
    ON k.client_id = e.client_id
WHERE (
    (
        e.export_status = 'exported'
        AND e.processed_at < k.cutoff
        AND e.created_at < %(billed_end)s
        AND e.export_hour < %(billed_end)s
        AND EXISTS (
            SELECT 1 FROM export_runs AS r
            WHERE r.client_id = e.client_id
              AND r.interval_start = e.export_hour
              AND r.status = 'succeeded'
        )
    )
    OR (
        e.export_status = 'archived'
        AND e.created_at < %(archived_cutoff)s::timestamptz
        AND e.created_at < %(billed_end)s
    )
) IS NOT TRUE
