"""events_export: hourly per-client export to each client's bucket and the backup bucket."""

from __future__ import annotations

from airflow.sdk import AssetAlias, CronDataIntervalTimetable, Param, dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.orchestration.dag_defaults import START_DATE, dagrun_timeout, default_args
from events_pipeline.orchestration.deadlines import deadline_alert

#: One Asset event per published client-hour, on the client's export space ``s3://<bucket>/<prefix>``.
EXPORTED_HOURS = AssetAlias("events_export_client_hours")
#: Runs exporting at once: an hour stuck on one client never holds the next hours of the others.
MAX_ACTIVE_RUNS = 3

DOC = f"""
### Hourly per-client export (Parquet zstd or the client's format -> client bucket + backup bucket)

For each UTC hour (the run's **data interval**) and each **active** client, in one
database snapshot per client: stream the client's rows for the hour into parts, upload
each to `s3://<export_bucket>/<export_prefix>/dt=YYYY-MM-DD/hour=HH/` and
`s3://<events_backup_bucket>/<client_id>/dt=YYYY-MM-DD/hour=HH/`, mark the rows
`exported` (with their hour) and commit after the last upload; then write
`_manifest.json` last (the commit marker; `row_count` 0 for an empty hour) and record the
run in `export_runs`. Each published client-hour emits an Asset event on the client's
space (`s3://<export_bucket>/<export_prefix>`; extra: client, hour, rows, bytes, manifest keys).

- **Tasks**: `plan_export` packs the clients into at most `events_export_max_groups`
  (8) groups of about equal rows (clients whose last hour failed: a group of their own,
  last); `export_group` is mapped over them, named by its clients (`g01: acme,globex`),
  and exports them one after another. A client that fails never stops the others: the
  group fails at the end naming the failed clients, and its retry exports only those.
  Its return value (XCom) holds every client's figures (rows, bytes, manifest, seconds).
- **Schedule**: `CronDataIntervalTimetable("0 * * * *", UTC)`, catch-up on from
  {START_DATE:%Y-%m-%d %H:%M} UTC (`EVENTS_PIPELINE_START_DATE`), up to {MAX_ACTIVE_RUNS} hours
  at once (each client's hours stay in order: a run takes older rows only when no earlier
  hour of that client is still to come). A task try stuck longer than 45 min is killed
  (alert, retry); a run is stopped after 4 h; an hour not exported 60 min after it ended
  alerts through `events_health` (`check_export_runs`).
- **Which hour**: a scheduled run exports its data interval; **a manual trigger covers
  the last whole hour ending at (or before) its logical date** (`airflow dags test
  events_export 2026-11-27T10:00:00` exports 09:00-10:00), unless the form names hours.
- **Re-export from the UI** (*Trigger DAG*, form): **Clients** (ids; empty: every active
  client), **First hour** / **Last hour** (UTC hour starts, inclusive, at most 168, all
  ended; empty: the run's own hour). Exactly once as always: a published hour is
  rewritten with the same rows; other clients are not touched. **Allow shrinking**
  (+ **Reason**): publish an hour with fewer rows than it already held (rows removed since
  by retention or erasure) - only for the clients and hours of the form, logged and
  recorded in `export_runs.shrink_allowed`. Without it such an hour is never shrunk.
- **Inputs**: `events_log`, `clients`, Variables `events_backup_bucket`,
  `events_landing_bucket` (never a destination), `events_export_*`.
- **If a client fails**: its log lines (task `export_group [g..: ...]`) name the client,
  hour, bucket and key. See [{runbook_link("events_export")}] and `docs/export.md`.
"""


@dag(
    dag_id="events_export",
    description="Hourly: each client's events of the hour to its own bucket, plus a backup copy",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=True,
    max_active_runs=MAX_ACTIVE_RUNS,
    dagrun_timeout=dagrun_timeout("events_export"),
    deadline=deadline_alert("events_export"),
    default_args=default_args("events_export"),
    tags=["events", "export"],
    doc_md=DOC,
    params={
        "clients": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
            title="Clients",
            description="Manual re-export: the client ids to export. Empty: every active client.",
        ),
        "first_hour": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="First hour (UTC hour start)",
            description=(
                "Manual re-export: the first hour, e.g. 2026-11-27T09:00:00Z. Empty: the run's own hour "
                "(a manual run covers the last whole hour ending at or before its logical date)."
            ),
        ),
        "last_hour": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Last hour (UTC hour start, inclusive)",
            description="Manual re-export: the last hour (empty: the first hour only). At most 168 hours.",
        ),
        "allow_shrink": Param(
            False,
            type="boolean",
            title="Allow shrinking hours",
            description=(
                "Publish an hour of the clients above with fewer rows than it already held (rows removed "
                "since by retention or erasure), deleting the parts its new manifest does not list. "
                "Logged and recorded. Leave off unless the runbook says so."
            ),
        ),
        "reason": Param(
            "",
            type="string",
            title="Reason (with Allow shrinking)",
            description="Why the hours may shrink (ticket, request): recorded with the run.",
        ),
    },
)
def events_export() -> None:
    """Plan the groups of clients, then export each group's clients."""

    @task
    def plan_export(**context) -> list[dict]:
        """Pack the run's clients into groups (the form's clients and hours, or the run's hour)."""
        from events_pipeline.export.groups import form_request, plan

        request = form_request(
            context["params"],
            context["data_interval_start"],
            context["data_interval_end"],
            run_id=context["run_id"],
            user=getattr(context["dag_run"], "triggering_user_name", None),
        )
        return plan(request)

    @task(map_index_template="{{ task.op_kwargs['group']['label'] }}", outlets=[EXPORTED_HOURS])
    def export_group(group: dict, **context) -> dict:
        """Export the group's clients one after another; fail at the end naming the failed ones."""
        from events_pipeline.export.groups import add_asset_events, raise_for_failures, run_group

        ti = context["ti"]
        outcome = run_group(
            group,
            run_id=context["run_id"],
            retry=ti.try_number > 1,
            on_exported=lambda s: add_asset_events(context["outlet_events"][EXPORTED_HOURS], [s]),
        )
        if outcome.failed:  # a failed task has no return value: keep the figures in XCom anyway
            ti.xcom_push(key="client_results", value=outcome.as_dict())
        return raise_for_failures(outcome)

    export_group.expand(group=plan_export())


events_export()
