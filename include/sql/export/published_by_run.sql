-- Client-hours of a group that this Airflow run already published (an earlier try of
-- the group's task): its retry exports only the others (export/groups.py).
-- Parameters: clients, hour_starts, run_id.
SELECT client_id, interval_start
FROM export_runs
WHERE client_id = ANY (%(clients)s::text[])
  AND interval_start = ANY (%(hour_starts)s::timestamptz[])
  AND status = 'succeeded'
  AND airflow_run_id = %(run_id)s;
