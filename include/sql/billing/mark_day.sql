-- Record that the day's billing was computed (retention's gate).
INSERT INTO billing_runs (day, computed_at, clients, airflow_run_id)
VALUES (%(day)s, now(), %(clients)s, %(run_id)s)
ON CONFLICT (day) DO UPDATE
SET computed_at = excluded.computed_at,
    clients = excluded.clients,
    airflow_run_id = excluded.airflow_run_id
