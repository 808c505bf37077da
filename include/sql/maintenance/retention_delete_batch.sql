-- Delete the deletable rows of one block range [lo, hi) of {partition} (a TID
-- range scan: each batch reads only its own blocks). Same rule as
-- retention_any_deletable.sql: exported rows of a published export hour expired for
-- their client (the client's cutoff looked up in the parallel arrays; a client
-- missing from them has none, its rows stay), and archived rows created before
-- %(archived_cutoff)s.
DELETE FROM {partition} AS e
WHERE e.ctid >= %(lo)s::tid
  AND e.ctid < %(hi)s::tid
  AND (
        (
            e.export_status = 'exported'
        AND e.processed_at < (%(cutoffs)s::timestamptz[])[array_position(%(client_ids)s::text[], e.client_id)]
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
