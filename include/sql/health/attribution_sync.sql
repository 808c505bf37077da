-- Health check "check_attribution_sync" (docs/runbook.md#check_attribution_sync).
-- The state of the attribution sync with the pixel management service, as it
-- is now: the last sync run without errors, the last finished run, the runs of
-- the last max_age_minutes, and the open (unacknowledged) problems: answers
-- that were not applied as they came, or moves that were.
-- Whether the check fails is decided by the caller (it knows whether the
-- pixel_management connection exists).
-- Parameters: max_age_minutes.
WITH last_ok AS (
    SELECT max(finished_at) AS finished_at FROM attribution_sync_runs WHERE status = 'ok'
),
last_run AS (
    SELECT sync_run_id, status, finished_at, sites_asked, errors, deferred, sites_waiting,
           error_sample, error
    FROM attribution_sync_runs
    WHERE status <> 'running'
    ORDER BY sync_run_id DESC
    LIMIT 1
),
recent AS (
    SELECT count(*) AS runs,
           count(*) FILTER (WHERE status <> 'ok') AS runs_with_errors,
           coalesce(sum(errors), 0) AS site_errors
    FROM attribution_sync_runs
    WHERE status <> 'running'
      AND started_at >= now() - make_interval(mins => %(max_age_minutes)s::int)
),
open_problems AS (
    SELECT problem_id, kind, domain, current_client_id, answered_client_id, applied, applied_at,
           rows_released, detail, detected_at, last_seen_at, occurrences
    FROM attribution_sync_problems
    WHERE acknowledged_at IS NULL
)
SELECT
    now() AS checked_at,
    (SELECT finished_at FROM last_ok) AS last_ok_at,
    (SELECT to_jsonb(r) FROM last_run AS r) AS last_run,
    (SELECT runs FROM recent) AS recent_runs,
    (SELECT runs_with_errors FROM recent) AS recent_runs_with_errors,
    (SELECT site_errors FROM recent) AS recent_site_errors,
    (SELECT count(*) FROM open_problems) AS open_problem_count,
    (SELECT coalesce(jsonb_agg(to_jsonb(p) ORDER BY p.detected_at, p.problem_id), '[]'::jsonb)
     FROM (SELECT * FROM open_problems ORDER BY detected_at, problem_id LIMIT 10) AS p) AS problems
