"""events_db_migrate: apply pending schema migrations to the events database."""

from __future__ import annotations

from airflow.sdk import dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.orchestration.dag_defaults import START_DATE, dagrun_timeout, default_args

DOC = f"""
### Apply schema migrations (manual)

Applies the pending files of `include/sql/migrations/` to the `events_db`
connection, in order, each in its own transaction, under an advisory lock; then
makes sure `events_log` has daily partitions from yesterday to 3 days ahead.
Running it again applies nothing (safe to re-trigger at any time).

- **Schedule**: none (trigger it after a deploy that adds a migration).
- **Input**: connection `events_db`. **Output**: tables, `schema_migrations` rows.
- **Without Airflow**: `.venv/bin/python -m events_pipeline.common.migrations --dsn postgresql://...`
- **If it fails**: the log names the migration file and PostgreSQL's message;
  see [{runbook_link("events_db_migrate")}]. A failed file is rolled back whole.
"""


@dag(
    dag_id="events_db_migrate",
    description="Apply the schema migrations of include/sql/migrations (manual trigger)",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dagrun_timeout("events_db_migrate"),
    default_args=default_args("events_db_migrate"),
    tags=["events", "schema"],
    doc_md=DOC,
)
def events_db_migrate() -> None:
    """Apply migrations, then prepare partitions."""

    @task
    def apply_migrations() -> list[str]:
        """Apply every pending migration; return the versions applied."""
        from events_pipeline.common.db import connect
        from events_pipeline.common.migrations import apply_migrations as apply

        with connect() as conn:
            return apply(conn)

    @task
    def ensure_partitions() -> list[str]:
        """Create the daily partitions around today."""
        from events_pipeline.common.db import connect
        from events_pipeline.common.partitions import ensure_partitions_around

        with connect() as conn:
            return ensure_partitions_around(conn)

    apply_migrations() >> ensure_partitions()


events_db_migrate()
