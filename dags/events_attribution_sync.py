"""events_attribution_sync: resolve unattributed sites through the pixel management service (every 5 min)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.orchestration.dag_defaults import START_DATE, dagrun_timeout, default_args
from events_pipeline.orchestration.deadlines import deadline_alert

DOC = f"""
### Attribution sync with the pixel management service

Events whose `site_id` matches no `client_domains` row are stored without a
client (ingest never waits for a service). This DAG asks the pixel management
service who owns those sites and records the answers, so re-attribution can
give the waiting events their client before the next hourly export.

1. **resolve_sites** - the distinct sites of unattributed pending events of the
   last `events_attribution_lookback_hours` (normalised; minus sites
   `client_domains` already matches and sites answered 404 within
   `events_attribution_negative_ttl_minutes`), plus service mappings older than
   `events_attribution_refresh_minutes`, are asked about with
   `GET /api/v1/config/domain/<site>` (parallel, timeouts, retries with backoff,
   429 `Retry-After` honoured). A known client for an unmapped site becomes a
   `client_domains` row with `source = 'pixel_management'`; 404 goes to the
   negative cache; an unknown client, a malformed body, or a domain already
   mapped to another client is recorded in `attribution_sync_problems`, logged at
   ERROR and reported by `events_health.check_attribution_sync`. A domain the
   service itself had mapped and now gives to another client moves: its rows not
   yet exported follow it, exported rows never change.
2. **reattribute_waiting_rows** - when a mapping was added or moved (or a waiting
   site is already matched by a manual mapping, or an earlier re-attribution failed): the existing
   re-attribution (`events_pipeline.maintenance.reattribution`, GDPR treatment
   included) gives the waiting rows their client; the next export takes them.

- **Schedule**: every 5 minutes, no catch-up, one run at a time.
- **Inputs**: connection `pixel_management` (HTTP; password = Bearer token, extra
  `{{"headers": {{...}}}}`), `events_db`; Variables `events_attribution_*`
  (docs/attribution.md).
- **Without the connection** both tasks are skipped and the pipeline works as
  before: ingest attributes with `client_domains` only.
- **Outputs**: `client_domains`, `attribution_negative_cache`,
  `attribution_sync_problems`, `attribution_sync_runs`, re-attributed `events_log` rows.
- **If it fails**: the log line names the connection, setting or domain at
  fault. See [{runbook_link("events_attribution_sync")}] and docs/attribution.md.
"""


@dag(
    dag_id="events_attribution_sync",
    description="Resolve unattributed sites through the pixel management service, then re-attribute",
    schedule="*/5 * * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    # a run must not hold the next ones: its requests stop after events_attribution_run_budget_seconds
    dagrun_timeout=dagrun_timeout("events_attribution_sync"),
    deadline=deadline_alert("events_attribution_sync"),
    default_args=default_args("events_attribution_sync", execution_timeout=timedelta(minutes=10)),
    tags=["events", "attribution"],
    doc_md=DOC,
)
def events_attribution_sync() -> None:
    """Resolve sites, then re-attribute the rows waiting for them."""

    @task
    def resolve_sites(run_id: str | None = None) -> dict:
        """Ask the service about unattributed sites and record the answers (skips without the connection)."""
        from events_pipeline.attribution import sync

        return sync.run(run_id=run_id)

    @task
    def reattribute_waiting_rows(resolved: dict, run_id: str | None = None) -> dict:
        """Attribute the waiting rows when a mapping was added or moved (else skip)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from events_pipeline.attribution import sync
        from events_pipeline.maintenance import reattribution

        if not resolved.get("reattribute"):
            raise AirflowSkipException(
                "no mapping added or moved since the last re-attribution: nothing to do"
            )
        done = reattribution.run(run_id=run_id)
        sync.mark_reattributed(resolved["sync_run_id"])
        return done

    reattribute_waiting_rows(resolve_sites())


events_attribution_sync()
