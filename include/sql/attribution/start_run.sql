-- A sync run begins.
INSERT INTO attribution_sync_runs (airflow_run_id) VALUES (%(run_id)s) RETURNING sync_run_id
