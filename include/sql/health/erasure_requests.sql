-- Health check "check_erasure_requests" (docs/runbook.md#check_erasure_requests).
-- No erasure request is 'failed', and every request is done within deadline_days of
-- requested_at (Variable events_erasure_deadline_days; the legal limit is one month),
-- the age judged at the end of the run's data interval (a request's status is the
-- current one). Lists the oldest ten.
-- Parameters: interval_end, deadline_days.
WITH open AS (
    SELECT request_id, client_id, status, requested_at, attempts, failures, next_attempt_at,
           left(error, 300) AS error,
           status = 'failed' AS failed,
           requested_at < %(interval_end)s::timestamptz - make_interval(days => %(deadline_days)s::int)
               AS overdue,
           extract(epoch FROM (%(interval_end)s::timestamptz - requested_at)) / 86400.0 AS age_days
    FROM gdpr_erasure_requests
    WHERE status <> 'done'
),
bad AS (
    SELECT * FROM open WHERE failed OR overdue
)
SELECT
    NOT EXISTS (SELECT 1 FROM bad) AS ok,
    (SELECT count(*) FROM open) AS open_count,
    (SELECT min(requested_at) FROM open) AS oldest_open,
    (SELECT count(*) FROM bad) AS bad_count,
    (SELECT coalesce(jsonb_agg(to_jsonb(b) ORDER BY b.requested_at, b.request_id), '[]'::jsonb)
     FROM (SELECT * FROM bad ORDER BY requested_at, request_id LIMIT 10) AS b) AS requests
