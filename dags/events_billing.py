"""events_billing: per-client billing rollups per UTC day (daily, catch-up, backfillable)."""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.orchestration.dag_defaults import START_DATE, dagrun_timeout, default_args
from events_pipeline.orchestration.deadlines import deadline_alert

DOC = f"""
### Billing rollups

Recomputes `billing_daily` for the run's UTC day (its data interval) and the
2 days before it (late exports settle), from tables retention never touches:
`ingest_counts` (events received per client; `''` = unattributed),
`landing_files.rows_rejected` (rejected lines, by load day), `export_runs`
(succeeded exports: events and bytes exported, last export time). One row per
client and day, plus the pseudo-row `client_id='_total'` with the day's totals,
`events_rejected` and `events_unattributed` (unknown per client: NULL there).
Then records the day in `billing_runs`: retention only deletes rows of billed days.

- **Schedule**: daily at 00:00 UTC for the day that just ended; catch-up on:
  backfill any range with `airflow backfill create --dag-id events_billing --from-date A --to-date B`.
- **Recompute a date range from the UI**: *Trigger DAG* and fill in the form's
  **First day** and **Last day** (UTC, inclusive; at most 400 days, none in the
  future). Empty fields: the run bills its own day as a scheduled run does. A
  wrong range fails the run at once, naming the field.
- **Inputs**: `events_db`. **Outputs**: `billing_daily`, `billing_runs`.
- **Re-runs** recompute the same figures (delete + insert per day in one transaction).
  See [{runbook_link("events_billing")}] and docs/maintenance.md.
"""


@dag(
    dag_id="events_billing",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=True,
    max_active_runs=4,
    dagrun_timeout=dagrun_timeout("events_billing"),
    deadline=deadline_alert("events_billing"),
    default_args=default_args("events_billing"),
    tags=["events", "billing"],
    doc_md=DOC,
    description="Daily billing rollups per client; trigger with a date range to recompute it",
    params={
        "first_day": Param(
            None,
            type=["null", "string"],
            format="date",
            title="First day (UTC)",
            description="Manual recompute: the first day to bill again. Empty: the run's own day.",
        ),
        "last_day": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Last day (UTC, inclusive)",
            description="Manual recompute: the last day (empty: the first day only). At most 400 days.",
        ),
    },
)
def events_billing() -> None:
    """One task: roll up the interval's day(s)."""

    @task
    def compute_billing(data_interval_start=None, data_interval_end=None, run_id=None, params=None) -> dict:
        """Recompute billing_daily for the form's range, or the data interval's day(s)."""
        from events_pipeline.billing import daily_rollup

        return daily_rollup.run(data_interval_start, data_interval_end, run_id=run_id, params=params)

    compute_billing()


events_billing()
