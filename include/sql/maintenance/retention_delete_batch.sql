-- Delete the deletable rows of one block range [lo, hi) of {partition} (a TID
-- range scan: each batch reads only its own blocks). Same rule as
-- retention_any_deletable.sql, in two parts that never meet (export_status differs):
--   * exported rows of a published export hour expired for their client: the rows
--     joined to the clients' cutoffs (a hash join on client_id, not a lookup in the
--     arrays per row; a client missing from them has none, its rows stay);
--   * archived rows created before %(archived_cutoff)s, whatever their client (NULL
--     included): no join.
-- Returns the number of rows deleted.
WITH exported AS (
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
    RETURNING 1
),
archived AS (
    DELETE FROM {partition} AS e
    WHERE e.ctid >= %(lo)s::tid
      AND e.ctid < %(hi)s::tid
      AND e.export_status = 'archived'
      AND e.created_at < %(archived_cutoff)s::timestamptz
      AND e.created_at < %(billed_end)s
    RETURNING 1
)
SELECT (SELECT count(*) FROM exported) + (SELECT count(*) FROM archived) AS deleted
