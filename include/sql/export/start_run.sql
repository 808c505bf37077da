-- Record an attempt of (client, hour). A published hour stays 'succeeded'
-- while it is rewritten (so a crash of the rewrite never re-opens the claim).
INSERT INTO export_runs AS r
    (client_id, interval_start, interval_end, status, attempts, started_at, airflow_run_id, error)
VALUES (%(client_id)s, %(hour_start)s, %(hour_end)s, 'running', 1, now(), %(run_id)s, NULL)
ON CONFLICT (client_id, interval_start) DO UPDATE
SET status = CASE WHEN r.status = 'succeeded' THEN 'succeeded' ELSE 'running' END,
    attempts = r.attempts + 1,
    started_at = now(),
    airflow_run_id = EXCLUDED.airflow_run_id,
    error = NULL;
