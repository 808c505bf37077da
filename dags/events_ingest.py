"""events_ingest: load new landing files into events_log, exactly once."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.orchestration.assets import EVENTS_LOG
from events_pipeline.orchestration.dag_defaults import START_DATE, dagrun_timeout, default_args
from events_pipeline.orchestration.deadlines import deadline_alert

DOC = f"""
### Load landing files into `events_log` (every 5 minutes)

Claims new objects under `incoming/` of the landing bucket in the registry
table `landing_files` (a lease per file: two runs never load the same file; a
crashed claim is taken over after the lease), then loads them in parallel
(dynamic task mapping over batches of files): each file is validated line by
line, attributed to its client, GDPR-treated, COPY-ed into `events_log` in one
transaction with its registry row and `ingest_counts`, then moved to
`processed/`. Bad lines go to `rejected/<sub-path>/<name>.rejected.ndjson`;
unreadable files to `quarantine/` with an `.error.json`.

- **Schedule**: `*/5 * * * *`, no catch-up; concurrent runs are safe (claims).
- **Input**: `s3://{{events_landing_bucket}}/incoming/**.ndjson[.gz]|.jsonl[.gz]|.parquet`,
  tables `client_domains`, `clients`. Variables `events_landing_bucket`,
  `events_ip_hash_secret`, `events_ingest_*` (docs/ingest.md).
- **Output**: `events_log` rows, `landing_files`, `ingest_counts`; objects in
  `processed/`, `rejected/`, `quarantine/`; an Asset event on `events_log`
  when rows were committed.
- **If it fails**: every task is safe to retry or re-run; the log line names
  the file and its `file_id`; `landing_files.error` keeps the last error.
  See [{runbook_link("events_ingest")}] and docs/ingest.md (on-call notes).
"""


@dag(
    dag_id="events_ingest",
    description="Every 5 minutes: load landing files into events_log exactly once (validated, attributed)",
    schedule="*/5 * * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=2,
    dagrun_timeout=dagrun_timeout("events_ingest"),
    deadline=deadline_alert("events_ingest"),
    default_args=default_args("events_ingest"),
    tags=["events", "ingest"],
    doc_md=DOC,
)
def events_ingest() -> None:
    """List and claim landing files, load them in mapped batches, summarise."""

    @task
    def claim_files(**context: Any) -> list[list[dict[str, Any]]]:
        """Ensure partitions, then claim landing files; return batches to map over."""
        from events_pipeline.ingest import pipeline

        return pipeline.claim_files(context["run_id"])

    @task(max_active_tis_per_dag=8, map_index_template="{{ task.op_kwargs['batch'][0]['key'] }}")
    def load_batch(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Load and move every file of one batch."""
        from events_pipeline.ingest import pipeline

        return pipeline.load_batch(batch)

    @task(outlets=[EVENTS_LOG], trigger_rule="none_failed")
    def summarize(results: list[list[dict[str, Any]]], **context: Any) -> dict[str, Any]:
        """Log the run summary; emit an events_log Asset event when rows were committed."""
        from airflow.sdk.exceptions import AirflowSkipException

        from events_pipeline.ingest import pipeline

        totals = pipeline.summarize(list(results))
        if not totals["rows_loaded"]:
            raise AirflowSkipException("no new events committed: no Asset event for events_log")
        context["outlet_events"][EVENTS_LOG].extra = {
            "files": totals["files"],
            "rows_loaded": totals["rows_loaded"],
            "rows_rejected": totals["rows_rejected"],
        }
        return totals

    summarize(load_batch.expand(batch=claim_files()))


events_ingest()
