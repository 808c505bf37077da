"""events_gdpr_erasure: process pending GDPR erasure requests (hourly)."""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.orchestration.dag_defaults import START_DATE, default_args

DOC = f"""
### GDPR erasure requests

For every `pending` row of `gdpr_erasure_requests` (client, visitor): deletes the
visitor's events from `events_log`, rewrites every Parquet object of that client
in the backup bucket that contains the visitor (same key, same schema, zstd) and
updates the folder's `_manifest.json` (file rows/bytes/sha256, `row_count`).
The request records `status`, `rows_deleted`, `objects_rewritten`,
`client_objects` (objects in the client's own bucket: listed for the client, never
modified), `started_at`, `processed_at`, `attempts`, `error`.

- **Schedule**: hourly at :30 UTC (off the exports' :00), no catch-up (each run takes every pending request).
- **Inputs**: `events_db`, `aws_default`, Variable `events_backup_bucket`.
- **Outputs**: rows deleted, backup objects and manifests rewritten, request rows updated.
- **Re-runs** are safe: a crash midway leaves the request `processing`, the next
  run finishes it; a request failing 5 times becomes `failed` (its `error` names the object).
  See [{runbook_link("events_gdpr_erasure")}] and docs/maintenance.md.
"""


@dag(
    dag_id="events_gdpr_erasure",
    description="Hourly: carry out GDPR erasure requests (visitor rows and backup exports)",
    schedule=CronDataIntervalTimetable("30 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["events", "privacy"],
    doc_md=DOC,
)
def events_gdpr_erasure() -> None:
    """One task: process the pending requests."""

    @task
    def process_erasure_requests() -> dict:
        """Erase the requested visitors from events_log and the backup exports."""
        from events_pipeline.erasure import requests as erasure

        return erasure.run()

    process_erasure_requests()


events_gdpr_erasure()
