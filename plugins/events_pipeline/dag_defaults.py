"""What every DAG of the pipeline gets: default args, tags, callbacks, docs links.

DAG files import from here so retries, backoff, ownership and on-call logging
are defined once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("events_pipeline.oncall")

OWNER = "data-platform"
#: Tags a DAG may carry (the integrity test enforces the allow-list).
ALLOWED_TAGS = frozenset(
    {"events", "ingest", "export", "maintenance", "privacy", "billing", "health", "schema"}
)
#: Every DAG starts here; catch-up DAGs backfill from this date at most.
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
RUNBOOK = "docs/runbook.md"

#: DAG ids reserved by the contract (SPEC §4).
DAG_IDS = (
    "events_db_migrate",
    "events_ingest",
    "events_export",
    "events_maintenance",
    "events_gdpr_erasure",
    "events_billing",
    "events_health",
)


def runbook_link(anchor: str) -> str:
    """Return the runbook reference for an entry, for ``doc_md`` and log lines.

    :param anchor: the entry's heading anchor in ``docs/runbook.md``.
    """
    return f"{RUNBOOK}#{anchor}"


def failure_summary(context: dict[str, Any]) -> str:
    """Build the one-line on-call summary of a failed task from its context.

    :param context: the Airflow task context given to callbacks.
    """
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    map_index = getattr(ti, "map_index", -1)
    if map_index is not None and map_index >= 0:
        task_id = f"{task_id}[{map_index}]"
    try_number = getattr(ti, "try_number", "?")
    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    interval = f"{start:%Y-%m-%dT%H:%M}Z..{end:%Y-%m-%dT%H:%M}Z" if start and end else "no interval"
    exc = context.get("exception")
    error = f"{type(exc).__name__}: {exc}" if exc else "unknown error"
    error = " ".join(str(error).split())[:500]
    return (
        f"FAILED dag={dag_id} task={task_id} try={try_number} interval={interval} "
        f"error={error} | runbook: {runbook_link(dag_id)}"
    )


def on_failure_log(context: dict[str, Any]) -> None:
    """Failure callback: log the one-line summary, then notify where configured.

    :param context: the Airflow task context.
    """
    summary = failure_summary(context)
    log.error(summary)
    try:
        from events_pipeline.alerting import notify
    except ImportError:  # alerting arrives with the health issue
        return
    notify(summary, context)


def default_args(**overrides: Any) -> dict[str, Any]:
    """Return the default args every DAG uses, with ``overrides`` applied.

    Retries with exponential backoff (1 min, 2 min, 4 min... capped at 30 min):
    each task body is idempotent, so a retry is always safe.

    :param overrides: keys to replace (e.g. ``retries=5`` for a flaky step).
    """
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "on_failure_callback": on_failure_log,
    }
    args.update(overrides)
    return args
