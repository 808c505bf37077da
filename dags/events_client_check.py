"""events_client_check: check a client's configuration, bucket and keys before its first export."""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.export.keys import CLIENT_ID_RE
from events_pipeline.orchestration.dag_defaults import START_DATE, dagrun_timeout, default_args

DOC = f"""
### Check a client before its first export (manual)

*Trigger DAG* and fill in the form: **Client id** (a row of `clients`) and
**Write a test object** (default on). One task, `check_client`, logs one line per
finding (`client_check client=<id> check=<name> status=ok|info|warn|fail|skip: ...`)
and fails at the end naming every failed check:

- `client`, `options`: the row and its export options (format, compression,
  server-side encryption, part bounds), validated as `events_export` validates them;
- `isolation`, `landing_bucket`: the bucket and prefix are valid, inside no other
  client's space, and neither the backup bucket nor the landing bucket;
- `domains`: the client's domains and the events seen for each in the last 24 hours
  (attributed, or unattributed until re-attribution);
- `connection`: `export_conn_id` (empty: `aws_default`) exists;
- `test_object`: writes `<export_prefix>/_events_client_check/<time>.json` with the
  client's SSE settings; only the PutObject answer counts, so a **put-only** bucket
  passes. `delete_test_object` tries to remove it again and only reports whether
  DeleteObject is allowed; `export_permissions` reports HeadBucket and ListBucket;
- `next_export`: the exact keys of the next hour's parts and `_manifest.json`, in the
  client bucket and in the backup bucket.

A client id that does not exist fails at once, naming the form field. Nothing is
changed in the database. See [{runbook_link("events_client_check")}] and `docs/export.md`.
"""


@dag(
    dag_id="events_client_check",
    description="Manual: check one client's export configuration, bucket access and keys before it goes live",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=4,
    dagrun_timeout=dagrun_timeout("events_client_check"),
    default_args=default_args("events_client_check"),
    tags=["events", "export"],
    doc_md=DOC,
    params={
        "client_id": Param(
            type="string",
            pattern=CLIENT_ID_RE.pattern,
            title="Client id",
            description="The client to check: clients.client_id (lower-case letters, digits, '_' and '-').",
        ),
        "write_test_object": Param(
            True,
            type="boolean",
            title="Write a test object",
            description=(
                "Write a small object into the client's prefix with the export's encryption settings, "
                "then try to delete it (a refused delete is reported, not a failure)."
            ),
        ),
    },
)
def events_client_check() -> None:
    """One task: check the client of the form and log the findings."""

    @task
    def check_client(params=None, run_id=None) -> dict:
        """Check the form's client; fail naming every failed check."""
        from events_pipeline.export.client_check import run_client_check

        return run_client_check(params, run_id=run_id)

    check_client()


events_client_check()
