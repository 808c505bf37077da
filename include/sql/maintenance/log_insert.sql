INSERT INTO maintenance_log
    (step, client_id, partition_name, rows_affected, details, airflow_run_id, started_at)
VALUES
    (%(step)s, %(client_id)s, %(partition)s, %(rows)s, %(details)s, %(run_id)s, %(started_at)s)
