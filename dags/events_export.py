"""events_export: hourly per-client Parquet export to each client's bucket and the backup bucket."""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.orchestration.dag_defaults import START_DATE, default_args

DOC = f"""
### Hourly per-client export (Parquet zstd -> client bucket + backup bucket)

For each UTC hour (the run's **data interval**) and each **active** client (one
mapped task per client, named by client id), in one database snapshot: stream
the client's rows for the hour to Parquet parts, upload each part to
`s3://<export_bucket>/<export_prefix>/dt=YYYY-MM-DD/hour=HH/` and
`s3://<events_backup_bucket>/<client_id>/dt=YYYY-MM-DD/hour=HH/`, mark the rows
`exported` (with their hour) and commit after the last upload; then write
`_manifest.json` last (the commit marker; `row_count` 0 for an empty hour) and
record the run in `export_runs`.

- **Schedule**: `CronDataIntervalTimetable("0 * * * *", UTC)`, catch-up on from
  {START_DATE:%Y-%m-%d %H:%M} UTC (`EVENTS_PIPELINE_START_DATE`; the first run
  also exports every older unclaimed row), `max_active_runs=1` (hours run in order).
  `airflow dags test events_export T` exports the hour **ending** at T;
  `airflow backfill create --dag-id events_export --from-date A --to-date B --max-active-runs 1`
  exports old hours (a backfill has its own limit, default 10: with 1, late rows stay in the
  next hour; with more they may land a few hours later, still exactly once).
- **Inputs**: `events_log`, `clients` (bucket, prefix, `export_conn_id` -> default `aws_default`),
  Variable `events_backup_bucket`, Variables `events_export_part_max_rows`,
  `events_export_part_max_bytes`, `events_export_row_group_rows`.
- **Outputs**: Parquet parts + `_manifest.json` in both buckets, `events_log.export_status/processed_at`,
  one `export_runs` row per client and hour.
- **Exactly once**: a row belongs to the hour that exported it (`events_log.export_hour`);
  re-running a published hour rewrites the same keys with the same rows. Late rows
  (load committed after their hour ran) go to the next hour's export.
- **If a client fails**: only its task fails; its log line names the client, bucket and
  key. Bucket missing / access denied / bad prefix fail at once (no retry): fix the
  `clients` row or the bucket policy, then clear that task. See [{runbook_link("events_export")}]
  and `docs/export.md`.
"""


@dag(
    dag_id="events_export",
    description="Hourly: each client's events of the hour as Parquet to its own bucket, plus a backup copy",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=True,
    max_active_runs=1,
    default_args=default_args(),
    tags=["events", "export"],
    doc_md=DOC,
)
def events_export() -> None:
    """List active clients, then export each one's hour."""

    @task
    def list_active_clients() -> list[str]:
        """Return the ids of the clients to export this hour."""
        from events_pipeline.export.client_hour import active_client_ids

        return active_client_ids()

    @task(map_index_template="{{ task.op_kwargs['client_id'] }}")
    def export_client(client_id: str, **context) -> dict:
        """Export one client's hour (idempotent; safe to retry or clear)."""
        from events_pipeline.export.client_hour import export_client_hour

        return export_client_hour(
            client_id,
            context["data_interval_start"],
            context["data_interval_end"],
            run_id=context["run_id"],
        )

    export_client.expand(client_id=list_active_clients())


events_export()
