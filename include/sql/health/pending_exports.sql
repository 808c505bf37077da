-- Health check "check_pending_exports" (docs/runbook.md#check_pending_exports).
-- Attributed events still export_status = 'pending' although they were
-- created more than max_pending_minutes before the end of the run's data
-- interval, per client: how many and the oldest created_at.
-- Two index-friendly parts instead of a scan of the whole table:
--   unclaimed: no export hour yet (partial index events_log_unclaimed_idx);
--   claimed:   events not delivered although marked: in an export hour whose
--              marking committed (rows exported into it, parts uploaded) but
--              whose export_runs row never became 'succeeded' (no manifest).
--              Every such hour, however old, until it is published: from
--              export_runs_unpublished_idx (few rows), the rows still in the hour
--              (events_log_export_hour_idx) or, when retention or erasure removed
--              them, the count the marking recorded (committed_rows, migration 0070).
-- Parameters: interval_end, max_pending_minutes.
WITH cutoff AS (
    SELECT %(interval_end)s::timestamptz - make_interval(mins => %(max_pending_minutes)s::int) AS t
),
unclaimed AS (
    SELECT e.client_id, count(*) AS events, min(e.created_at) AS oldest
    FROM events_log e, cutoff
    WHERE e.export_hour IS NULL
      AND e.client_id IS NOT NULL
      AND e.export_status = 'pending'
      AND e.created_at < cutoff.t
    GROUP BY e.client_id
),
claimed AS (
    SELECT r.client_id,
           sum(greatest(coalesce(r.committed_rows, 0), m.events)) AS events,
           min(coalesce(m.oldest, r.interval_start)) AS oldest,
           min(r.interval_start) AS oldest_hour
    FROM export_runs r
    CROSS JOIN cutoff
    CROSS JOIN LATERAL (
        SELECT count(*) AS events, min(e.created_at) AS oldest
        FROM events_log e
        WHERE e.client_id = r.client_id
          AND e.export_hour = r.interval_start
    ) AS m
    WHERE r.status <> 'succeeded'
      AND r.interval_start < cutoff.t
      AND (r.committed_rows > 0 OR m.events > 0)
    GROUP BY r.client_id
),
per_client AS (
    SELECT client_id,
           coalesce(u.events, 0) + coalesce(c.events, 0) AS events,
           coalesce(u.events, 0) AS unclaimed_events,
           coalesce(c.events, 0) AS claimed_events,
           least(u.oldest, c.oldest) AS oldest,
           c.oldest_hour
    FROM unclaimed u
    FULL JOIN claimed c USING (client_id)
)
SELECT
    NOT EXISTS (SELECT 1 FROM per_client) AS ok,
    (SELECT t FROM cutoff) AS cutoff,
    (SELECT coalesce(sum(events), 0) FROM per_client) AS total_events,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'client_id', p.client_id, 'events', p.events,
                'unclaimed', p.unclaimed_events, 'claimed', p.claimed_events,
                'oldest', p.oldest, 'oldest_hour', p.oldest_hour)
                ORDER BY p.oldest, p.client_id), '[]'::jsonb)
     FROM per_client p) AS clients
