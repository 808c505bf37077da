"""Airflow glue used by the DAG files: default args, failure callbacks, alerting, Assets."""
