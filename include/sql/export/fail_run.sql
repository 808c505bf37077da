-- An attempt failed: keep the error for on-call. A published hour stays 'succeeded'.
INSERT INTO export_runs AS r
    (client_id, interval_start, interval_end, status, attempts, started_at, finished_at,
     airflow_run_id, error)
VALUES (%(client_id)s, %(hour_start)s, %(hour_end)s, 'failed', 1, now(), now(), %(run_id)s, %(error)s)
ON CONFLICT (client_id, interval_start) DO UPDATE
SET status = CASE WHEN r.status = 'succeeded' THEN 'succeeded' ELSE 'failed' END,
    finished_at = now(),
    airflow_run_id = EXCLUDED.airflow_run_id,
    error = EXCLUDED.error;
