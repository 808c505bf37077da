-- Does {partition} hold at least one row retention may delete now? (stops at the first)
SELECT EXISTS (
    SELECT 1
    FROM {partition} AS e
    JOIN unnest(%(client_ids)s::text[], %(cutoffs)s::timestamptz[]) AS k (client_id, cutoff)
        ON k.client_id = e.client_id
    WHERE e.export_status = 'exported'
      AND e.processed_at < k.cutoff
      AND e.created_at < %(billed_end)s
      AND coalesce(e.export_hour, e.created_at) < %(billed_end)s
)
