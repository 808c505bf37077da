-- Delete the expired rows of one block range [lo, hi) of {partition} (a TID
-- range scan: each batch reads only its own blocks). Same rule as
-- retention_any_deletable.sql: only rows of a published export hour.
DELETE FROM {partition} AS e
USING unnest(%(client_ids)s::text[], %(cutoffs)s::timestamptz[]) AS k (client_id, cutoff)
WHERE k.client_id = e.client_id
  AND e.ctid >= %(lo)s::tid
  AND e.ctid < %(hi)s::tid
  AND e.export_status = 'exported'
  AND e.processed_at < k.cutoff
  AND e.created_at < %(billed_end)s
  AND e.export_hour < %(billed_end)s
  AND EXISTS (
      SELECT 1 FROM export_runs AS r
      WHERE r.client_id = e.client_id
        AND r.interval_start = e.export_hour
        AND r.status = 'succeeded'
  )
