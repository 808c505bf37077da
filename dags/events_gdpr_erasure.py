"""events_gdpr_erasure: file erasure requests from the UI form, carry out pending ones (hourly)."""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.export.keys import CLIENT_ID_RE
from events_pipeline.orchestration.dag_defaults import START_DATE, dagrun_timeout, default_args
from events_pipeline.orchestration.deadlines import deadline_alert

DOC = f"""
### GDPR erasure requests

Each request (client, visitor) is carried out on every copy the pipeline keeps:

- `events_log`: the visitor's events of the client, attributed to it or not yet
  attributed on one of its sites (any status); a tombstone keeps re-attribution from
  handing the client such rows later;
- the backup bucket: only the export hours that held the visitor (recorded when the
  rows are deleted): their Parquet / JSON Lines parts are rewritten without the
  visitor, their `_manifest.json` updated;
- the landing bucket: `rejected/` and `quarantine/` objects, and the `processed/`
  objects the visitor's events came from, rewritten without the visitor's lines (or
  deleted when nothing else is left).

The client's own bucket is the client's: its objects holding the visitor are listed in
the audit trail (`listed_for_client`), never changed. Every copy touched is one row of
`gdpr_erasure_audit` (view `gdpr_erasure_audit_trail`), printed in the task log when the
request is done; then the request keeps a digest of the visitor, not the id.

- **File a request from the UI**: *Trigger DAG* and fill in **Client id**, **Visitor
  id**, **Requested by** (and **Reference**): the run files it (a wrong or unknown client
  id, an empty visitor id fail the run at once, naming the field) and carries it out.
  An empty form carries out the pending requests, as a scheduled run does.
- **Schedule**: hourly at :30 UTC (off the exports' :00), no catch-up, one run at a time.
- **Failures**: a request whose pass fails is retried by later runs with a growing
  delay (`next_attempt_at`; Variables `events_erasure_retry_base_minutes`,
  `events_erasure_retry_max_minutes`); it becomes `failed` after
  `events_erasure_max_failures` failures or at once when retrying cannot help (unknown
  client, unreadable backup object). `check_erasure_requests` (events_health) fails for
  any `failed` request and any request not done within `events_erasure_deadline_days`.
- **Inputs**: `events_db`, `aws_default`, Variables `events_backup_bucket`,
  `events_landing_bucket`. **Outputs**: rows deleted, objects rewritten or deleted,
  request, audit and tombstone rows.
- **Re-runs** are safe (every step is idempotent). See [{runbook_link("events_gdpr_erasure")}]
  and docs/maintenance.md.
"""


@dag(
    dag_id="events_gdpr_erasure",
    description="Hourly: GDPR erasure requests on every copy (rows, backups, landing); file one by form",
    schedule=CronDataIntervalTimetable("30 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dagrun_timeout("events_gdpr_erasure"),
    deadline=deadline_alert("events_gdpr_erasure"),
    default_args=default_args("events_gdpr_erasure"),
    tags=["events", "privacy"],
    doc_md=DOC,
    params={
        "client_id": Param(
            None,
            type=["null", "string"],
            pattern=CLIENT_ID_RE.pattern,
            title="Client id",
            description="The client (clients.client_id) whose visitor is to be erased. Empty: file nothing, "
            "carry out the pending requests.",
        ),
        "visitor_id": Param(
            None,
            type=["null", "string"],
            maxLength=100,
            title="Visitor id",
            description="The visitor id exactly as the client's events carry it (visitor_id).",
        ),
        "requested_by": Param(
            None,
            type=["null", "string"],
            maxLength=200,
            title="Requested by",
            description="Who asked: the person, the client's data protection officer... "
            "Kept with the request.",
        ),
        "reference": Param(
            None,
            type=["null", "string"],
            maxLength=200,
            title="Reference",
            description="Optional: the ticket or letter reference of the request.",
        ),
        "whole_backup_history": Param(
            False,
            type="boolean",
            title="Search the whole backup history",
            description="Also read every backup folder of the client (slow: the client's whole history). "
            "Needed only for a visitor whose events may be in hours that retention had already deleted "
            "when the backup visitor index was added (database migrations 0100 and 0130). By default the "
            "hours of the visitor's events still stored and the hours the index names are purged.",
        ),
    },
)
def events_gdpr_erasure() -> None:
    """File the form's request (if any), then carry out every due request."""

    @task
    def file_request(params=None, run_id=None) -> dict | None:
        """File the trigger form's request (an empty form files nothing)."""
        from events_pipeline.erasure import intake

        return intake.run(params, run_id=run_id)

    @task
    def process_erasure_requests() -> dict:
        """Carry out the due requests on events_log, the backup bucket and the landing bucket."""
        from events_pipeline.erasure import requests as erasure

        return erasure.run()

    file_request() >> process_erasure_requests()


events_gdpr_erasure()
