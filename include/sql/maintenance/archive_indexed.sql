-- Archive the pending, unclaimed rows of {partition} created before the cutoff,
-- found through the partial indexes (events_log_unclaimed_idx for attributed
-- rows, events_log_unattributed_idx for the others) instead of a scan of the
-- day. Used when archive_candidates_bound.sql says they are few (one bounded
-- transaction). Same rule as archive_batch.sql; counts per client.
WITH archived AS (
    UPDATE {partition} AS e
    SET export_status = 'archived'
    WHERE e.export_status = 'pending'
      AND e.export_hour IS NULL
      AND e.created_at < %(cutoff)s
      AND (
          (e.export_hour IS NULL AND e.client_id IS NOT NULL AND e.created_at < %(cutoff)s)
          OR e.client_id IS NULL
      )
    RETURNING e.client_id
)
SELECT coalesce(client_id, '') AS client_id, count(*) AS n
FROM archived
GROUP BY 1
