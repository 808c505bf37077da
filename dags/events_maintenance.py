"""events_maintenance: partitions, archival, re-attribution, GDPR sweep, retention, landing expiry (daily)."""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.orchestration.dag_defaults import START_DATE, dagrun_timeout, default_args
from events_pipeline.orchestration.deadlines import deadline_alert

DOC = f"""
### Daily maintenance of `events_log`

One task per step, so on-call sees which one failed; each is idempotent and
can simply be cleared and re-run.

1. **ensure_partitions** - daily partitions from yesterday to 3 days ahead.
2. **archive_stale_pending** - events still `pending` 30 days after `created_at`
   become `archived` (bounded batches; counts per client in the log and in `maintenance_log`).
3. **reattribute_events** - unattributed pending events whose `site_id` now matches
   `client_domains` get their client (and the GDPR treatment for GDPR clients);
   the next hourly export picks them up.
4. **sweep_gdpr_ips** - rows of GDPR clients still holding a raw IP are anonymised
   exactly as at ingest. Only rows created since a client's last sweep are read
   (one line per partition read in the log); a client that switched to `gdpr`, or a
   new treatment rule, gets one full pass over every partition (`gdpr_sweep_state`).
5. **apply_retention** - exported events are deleted `retention_days` (per client)
   after `processed_at`, archived events `events_archived_keep_days` (7) after
   archival could take them: whole partitions dropped or rebuilt, bounded batches
   otherwise; only days already billed (`billing_runs`) and hours already
   published (a succeeded `export_runs` row) are touched.

Beside them, on its own (it needs no database step first):
**expire_landing_objects** - deletes the landing bucket's `processed/`, `rejected/`
and `quarantine/` objects older than `events_landing_keep_processed_days` (7),
`events_landing_keep_rejected_days` (30), `events_landing_keep_quarantine_days`
(30); at most `events_landing_expiry_max_deletes` per prefix and run; counts and
bytes per prefix in the log and in `maintenance_log`.

- **Schedule**: daily at 03:00 UTC (no catch-up: each run works on "now").
- **Inputs**: `events_db`, `aws_default`; Variables `events_ip_hash_secret`,
  `events_landing_bucket` and the optional `events_retention_*`,
  `events_archive_after_days`, `events_archived_keep_days`, `events_gdpr_sweep_batch_rows`,
  `events_maintenance_batch_blocks`, `events_landing_keep_*_days`.
- **Outputs**: `events_log` changes, landing objects deleted, `maintenance_log` rows
  (one per step/client/partition/prefix).
- **If it fails**: the log line names the step, partition or client. A retention
  lock timeout means long queries held `events_log`: it retries by itself.
  See [{runbook_link("events_maintenance")}] and docs/maintenance.md.
"""


@dag(
    dag_id="events_maintenance",
    description="Daily: partitions, archival, re-attribution, GDPR IP sweep, retention, landing expiry",
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dagrun_timeout("events_maintenance"),
    deadline=deadline_alert("events_maintenance"),
    default_args=default_args("events_maintenance"),
    tags=["events", "maintenance", "privacy"],
    doc_md=DOC,
)
def events_maintenance() -> None:
    """Maintenance steps in order."""

    @task
    def ensure_partitions() -> list[str]:
        """Create the daily partitions around today."""
        from events_pipeline.common.db import connect
        from events_pipeline.common.partitions import ensure_partitions_around

        with connect() as conn:
            return ensure_partitions_around(conn)

    @task
    def archive_stale_pending(run_id: str | None = None) -> dict:
        """Archive events pending for longer than the archival age."""
        from events_pipeline.maintenance import archival

        return archival.run(run_id=run_id)

    @task
    def reattribute_events(run_id: str | None = None) -> dict:
        """Attribute unattributed pending events whose site now maps to a client."""
        from events_pipeline.maintenance import reattribution

        return reattribution.run(run_id=run_id)

    @task
    def sweep_gdpr_ips(run_id: str | None = None) -> dict:
        """Anonymise rows of GDPR clients that still hold a raw IP (rows created since the last sweep)."""
        from events_pipeline.privacy import sweep as gdpr_sweep

        return gdpr_sweep.run(run_id=run_id)

    @task
    def apply_retention(run_id: str | None = None) -> dict:
        """Delete expired exported and archived events (only days billing has rolled up)."""
        from events_pipeline.maintenance import retention

        return retention.run(run_id=run_id)

    @task
    def expire_landing_objects(run_id: str | None = None) -> dict:
        """Delete processed/, rejected/ and quarantine/ landing objects older than their keep days."""
        from events_pipeline.ingest.landing import PROCESSED, QUARANTINE, REJECTED
        from events_pipeline.maintenance import landing_expiry

        return landing_expiry.run(
            processed=PROCESSED, rejected=REJECTED, quarantine=QUARANTINE, run_id=run_id
        )

    (
        ensure_partitions()
        >> archive_stale_pending()
        >> reattribute_events()
        >> sweep_gdpr_ips()
        >> apply_retention()
    )
    expire_landing_objects()


events_maintenance()
