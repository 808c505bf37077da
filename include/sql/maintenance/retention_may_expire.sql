-- Cheap pre-check through events_log_export_hour_idx: can {partition} hold an
-- expired row at all? An hour is exported after it ends, so a row's processed_at
-- is at least its export_hour + 1 hour: when every client's earliest export hour
-- + 1 h is at or after its cutoff, nothing can have expired (skipping is always
-- safe: a row missed here is deleted by a later run). Archived rows (export_hour
-- NULL) are found through the partial indexes events_log_unclaimed_idx and
-- events_log_unattributed_idx instead, only when archived rows may be deleted at
-- all (%(archived_cutoff)s not NULL) and the partition starts before that cutoff
-- (%(archived_probe)s).
SELECT EXISTS (
    SELECT 1
    FROM unnest(%(client_ids)s::text[], %(cutoffs)s::timestamptz[]) AS k (client_id, cutoff)
    WHERE (
        SELECT min(e.export_hour)
        FROM {partition} AS e
        WHERE e.client_id = k.client_id
          AND e.export_hour IS NOT NULL
    ) + interval '1 hour' < k.cutoff
)
OR (%(archived_probe)s::boolean AND EXISTS (
    SELECT 1 FROM {partition} AS e
    WHERE e.export_hour IS NULL AND e.client_id IS NOT NULL
      AND e.created_at < %(archived_cutoff)s::timestamptz
      AND e.created_at < %(billed_end)s
      AND e.export_status = 'archived'
))
OR (%(archived_probe)s::boolean AND EXISTS (
    SELECT 1 FROM {partition} AS e
    WHERE e.client_id IS NULL
      AND e.created_at < %(archived_cutoff)s::timestamptz
      AND e.created_at < %(billed_end)s
      AND e.export_status = 'archived'
))
