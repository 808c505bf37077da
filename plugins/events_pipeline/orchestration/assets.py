"""Airflow Assets the pipeline produces, so downstream DAGs can be data-aware.

Why ``x-postgres://`` and not ``postgres://``: an Asset whose scheme a provider
registers (``postgres``, ``s3``...) makes Airflow import every provider's
asset-URI handlers while the DAG file is parsed - the Amazon one imports boto3
(~0.9 s and the heavy-import check of tests/dags). A private scheme carries the
same location without that cost; downstream DAGs schedule on this object (or
``Asset(name="events_log")``), never on a re-typed URI.
"""

from __future__ import annotations

from airflow.sdk import Asset

#: ``events_log`` in the events database; ``events_ingest`` emits an event on it
#: whenever a run commits new rows (extra: files, rows_loaded, rows_rejected).
EVENTS_LOG = Asset(uri="x-postgres://events-db:5432/events/public/events_log", name="events_log")
