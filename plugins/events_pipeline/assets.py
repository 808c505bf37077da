"""Airflow Assets the pipeline produces, so downstream DAGs can be data-aware."""

from __future__ import annotations

from airflow.sdk import Asset

#: ``events_log`` in the events database; ``events_ingest`` emits an event on it
#: whenever a run commits new rows (extra: files, rows_loaded, rows_rejected).
EVENTS_LOG = Asset(uri="postgres://events-db:5432/events/public/events_log", name="events_log")
