"""events_health: hourly data-quality and pipeline-health checks that fail loudly."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.common.settings import SQL_ROOT
from events_pipeline.health.checks import HealthSQLCheckOperator
from events_pipeline.orchestration.dag_defaults import START_DATE, dagrun_timeout, default_args
from events_pipeline.orchestration.deadlines import deadline_alert

DOC = f"""
### Pipeline health checks (hourly)

Each task is one check; they run independently (no chaining), so one failing
check never hides another, and the run fails when any of them fails. A failed
check logs, and alerts (e-mail / Slack when their connections exist), one line:
what is wrong, for which client or file, since when, and its runbook entry.

Tasks (each links its runbook entry; thresholds are the Variables named):

- `check_attribution_rate`: < `events_health_min_attribution_rate` of the
  hour's events have a client; names the top unknown site_ids.
  [{runbook_link("check_attribution_rate")}]
- `check_pending_exports`: an attributed event is pending longer than
  `events_health_max_pending_minutes` (per client: count, oldest).
  [{runbook_link("check_pending_exports")}]
- `check_batch_consistency`: a batch has more than one `created_at`.
  [{runbook_link("check_batch_consistency")}]
- `check_incoming_backlog`: the oldest object in `incoming/` is older than
  `events_health_max_incoming_age_minutes`. [{runbook_link("check_incoming_backlog")}]
- `check_quarantine`: any file sits in `quarantine/`. [{runbook_link("check_quarantine")}]
- `check_rejected_rate`: rejected lines exceed `events_health_max_rejected_rate`
  of the hour's lines. [{runbook_link("check_rejected_rate")}]
- `check_export_runs`: an active client has no succeeded export run for a
  closed hour. [{runbook_link("check_export_runs")}]
- `check_attribution_sync`: the sync with the pixel management service has an
  open problem (an answer not applied, or a domain moved between clients; names
  domain and client ids), or, with connection `pixel_management` defined, no sync
  without errors for `events_attribution_sync_max_age_minutes`.
  [{runbook_link("check_attribution_sync")}]
- `check_erasure_requests`: a GDPR erasure request is `failed`, or not done
  `events_erasure_deadline_days` (7) after it was requested; names each request.
  [{runbook_link("check_erasure_requests")}]
- `log_monitoring_metrics`: logs the original design's monitoring queries as one table
  (fails only when the database is unreachable). [{runbook_link("log_monitoring_metrics")}]

- **Schedule**: hourly, `CronDataIntervalTimetable("0 * * * *", UTC)`, no catch-up.
  "The last hour" is the run's data interval, so a backfilled run checks its own
  hour (S3 checks always see the bucket as it is now).
- **Inputs**: connection `events_db` (events_log, landing_files, export_runs,
  clients), `aws_default` + Variable `events_landing_bucket` (`incoming/`,
  `quarantine/`); thresholds are Variables (docs/health.md).
- **Outputs**: none besides logs, alerts and each task's message in XCom.
- **If it fails**: open the failed task's log; its last line names the runbook
  entry. Overview: [{runbook_link("events_health")}].
"""


@dag(
    dag_id="events_health",
    description="Hourly health checks: attribution, lag, backlog, rejections, quarantine, exports",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=2,
    # a check never needs long; a hung query must not hold the next hour's run
    dagrun_timeout=dagrun_timeout("events_health"),
    deadline=deadline_alert("events_health"),
    default_args=default_args("events_health", execution_timeout=timedelta(minutes=10)),
    template_searchpath=[str(SQL_ROOT)],
    tags=["events", "health"],
    doc_md=DOC,
)
def events_health() -> None:
    """Independent checks: SQL ones through common-sql, S3 ones as TaskFlow tasks."""
    for check in (
        "check_attribution_rate",
        "check_pending_exports",
        "check_batch_consistency",
        "check_rejected_rate",
        "check_export_runs",
        "check_erasure_requests",
    ):
        HealthSQLCheckOperator(check=check, doc_md=f"See {runbook_link(check)}.")

    @task
    def check_incoming_backlog() -> str:
        """Fail when the oldest object in incoming/ is older than the threshold."""
        from events_pipeline.health.checks import run_s3_check

        return run_s3_check("check_incoming_backlog")

    @task
    def check_quarantine() -> str:
        """Fail when any file sits in quarantine/."""
        from events_pipeline.health.checks import run_s3_check

        return run_s3_check("check_quarantine")

    @task
    def check_attribution_sync() -> str:
        """Fail on open attribution sync problems or a sync that has not succeeded lately."""
        from events_pipeline.health.checks import run_attribution_sync_check

        return run_attribution_sync_check()

    @task
    def log_monitoring_metrics(data_interval_start=None, data_interval_end=None) -> dict:
        """Run the original design's monitoring queries for the interval and log one table."""
        from events_pipeline.health.metrics_report import log_metrics

        return log_metrics(data_interval_start, data_interval_end)

    check_incoming_backlog()
    check_quarantine()
    check_attribution_sync()
    log_monitoring_metrics()


events_health()
