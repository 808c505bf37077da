-- Upper bound of the rows of {partition} archival may touch, from the two partial
-- indexes alone (index-only scans once the partition is vacuumed): unclaimed
-- attributed rows created before the cutoff (events_log_unclaimed_idx) plus
-- unattributed rows (events_log_unattributed_idx). Rows archived earlier are
-- still counted (export_hour stays NULL), so this is a bound, not the answer.
SELECT
    (SELECT count(*) FROM {partition} AS e
     WHERE e.export_hour IS NULL AND e.client_id IS NOT NULL AND e.created_at < %(cutoff)s)
    + (SELECT count(*) FROM {partition} AS e WHERE e.client_id IS NULL)
