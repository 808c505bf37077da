-- Health check "check_batch_consistency" (docs/runbook.md#check_batch_consistency).
-- A batch (one landing file) is loaded in one transaction, so all its rows
-- share one created_at. Finds batches with a row created in the run's data
-- interval and more than one created_at, looking back batch_lookback_minutes
-- before the interval for their other rows. Grouped by batch_id alone (the
-- original design grouped by batch_id, client_id and missed a split across clients).
-- Parameters: interval_start, interval_end, batch_lookback_minutes.
WITH window_rows AS (
    SELECT batch_id, client_id, file_id, created_at
    FROM events_log
    WHERE batch_id IS NOT NULL
      AND created_at >= %(interval_start)s::timestamptz
                        - make_interval(mins => %(batch_lookback_minutes)s::int)
      AND created_at < %(interval_end)s::timestamptz
),
bad_batches AS (
    SELECT batch_id,
           count(*) AS events,
           count(DISTINCT created_at) AS created_ats,
           min(created_at) AS first_created_at,
           max(created_at) AS last_created_at,
           coalesce(array_agg(DISTINCT client_id) FILTER (WHERE client_id IS NOT NULL), '{}') AS clients,
           coalesce(array_agg(DISTINCT file_id) FILTER (WHERE file_id IS NOT NULL), '{}') AS files
    FROM window_rows
    GROUP BY batch_id
    HAVING min(created_at) <> max(created_at)
       AND max(created_at) >= %(interval_start)s::timestamptz
)
SELECT
    NOT EXISTS (SELECT 1 FROM bad_batches) AS ok,
    (SELECT count(*) FROM bad_batches) AS bad_batch_count,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'batch_id', b.batch_id, 'events', b.events, 'created_ats', b.created_ats,
                'first_created_at', b.first_created_at, 'last_created_at', b.last_created_at,
                'clients', to_jsonb(b.clients), 'files', to_jsonb(b.files))
                ORDER BY b.first_created_at, b.batch_id), '[]'::jsonb)
     FROM (SELECT * FROM bad_batches ORDER BY first_created_at, batch_id LIMIT 10) b) AS batches
