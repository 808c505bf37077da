-- Does {partition} hold at least one row retention may delete now? (stops at the first)
-- An exported row is deletable when it is expired for its client, created and exported
-- on billed days, and its export hour is published (a 'succeeded' export_runs row):
-- rows marked by an export whose manifest never got written stay (contract §6.1).
-- An archived row (never exported: unattributed, or its client's export never took it)
-- is deletable once created before %(archived_cutoff)s (NULL: archived rows are kept)
-- on a billed day (contract §6.2).
SELECT EXISTS (
    SELECT 1
    FROM {partition} AS e
    LEFT JOIN unnest(%(client_ids)s::text[], %(cutoffs)s::timestamptz[]) AS k (client_id, cutoff)
        ON k.client_id = e.client_id
    WHERE (
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
)
