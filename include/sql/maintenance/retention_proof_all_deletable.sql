-- Index-only proof that EVERY row of {partition} may be deleted now, without
-- reading its heap (the exact scan costs ~0.5 s per million rows). It holds when:
--   * every row that is unclaimed (events_log_unclaimed_idx) or unattributed
--     (events_log_unattributed_idx) is archived and created before
--     %(archived_cutoff)s (pending ones must survive; a NULL cutoff keeps archived
--     ones too). Only those few rows are read from the heap (their export_status);
--     the first that must survive ends the probe;
--   * every (client, export_hour) pair present (walked through
--     events_log_export_hour_idx, one index probe per distinct pair) has a
--     'succeeded' export_runs row that finished before the client's cutoff and
--     an hour before the billing gate.
-- It relies on the export's contract: an hour is published by ONE transaction
-- that marks all its claimed rows exported with processed_at = now() and sets
-- export_runs.finished_at = now(); a published hour never claims more rows.
-- When the proof does not hold, retention falls back to the exact scan.
-- Parameters: client_ids/cutoffs (per client), billed_end, archived_cutoff.
WITH RECURSIVE pairs AS (
    (
        SELECT e.client_id, e.export_hour
        FROM {partition} AS e
        WHERE e.export_hour IS NOT NULL
        ORDER BY e.client_id, e.export_hour
        LIMIT 1
    )
    UNION ALL
    SELECT n.client_id, n.export_hour
    FROM pairs AS p
    CROSS JOIN LATERAL (
        SELECT e.client_id, e.export_hour
        FROM {partition} AS e
        WHERE e.export_hour IS NOT NULL
          AND (e.client_id, e.export_hour) > (p.client_id, p.export_hour)
        ORDER BY e.client_id, e.export_hour
        LIMIT 1
    ) AS n
)
SELECT
    NOT EXISTS (
        SELECT 1 FROM {partition} AS e
        WHERE e.export_hour IS NULL AND e.client_id IS NOT NULL
          AND (e.export_status = 'archived' AND e.created_at < %(archived_cutoff)s::timestamptz) IS NOT TRUE
    )
    AND NOT EXISTS (
        SELECT 1 FROM {partition} AS e
        WHERE e.client_id IS NULL
          AND (e.export_status = 'archived' AND e.created_at < %(archived_cutoff)s::timestamptz) IS NOT TRUE
    )
    AND NOT EXISTS (
        SELECT 1
        FROM pairs AS p
        LEFT JOIN unnest(%(client_ids)s::text[], %(cutoffs)s::timestamptz[]) AS k (client_id, cutoff)
            ON k.client_id = p.client_id
        LEFT JOIN export_runs AS r
            ON r.client_id = p.client_id AND r.interval_start = p.export_hour
        WHERE k.cutoff IS NULL
           OR r.status IS DISTINCT FROM 'succeeded'
           OR NOT (r.finished_at < k.cutoff)
           OR NOT (p.export_hour < %(billed_end)s)
    ) AS provable,
    (SELECT count(*) FROM pairs) AS pairs
