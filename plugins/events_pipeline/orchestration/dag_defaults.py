"""What every DAG of the pipeline gets: default args, tags, callbacks, docs links.

DAG files import from here so retries, backoff, ownership and on-call logging
are defined once.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from events_pipeline.common.runbook import runbook_link

log = logging.getLogger("events_pipeline.oncall")

OWNER = "data-platform"
#: Tags a DAG may carry (the integrity test enforces the allow-list).
ALLOWED_TAGS = frozenset(
    {"events", "ingest", "export", "maintenance", "privacy", "billing", "health", "schema", "attribution"}
)
#: Environment variable that moves the start date (read at parse time: no I/O).
START_DATE_ENV = "EVENTS_PIPELINE_START_DATE"


#: Start date when the environment does not set one: the pipeline's go-live day.
DEFAULT_START_DATE = datetime(2026, 11, 26, tzinfo=UTC)


def start_date_from_env(value: str | None = None) -> datetime:
    """Return the start date of every DAG: ``EVENTS_PIPELINE_START_DATE`` or 2026-11-26.

    Catch-up DAGs (export, billing) create runs from this date on, so a new
    deployment sets it to its go-live hour (a year back would queue ~8,800
    hourly export runs; the first export run claims every older unclaimed row
    anyway). ``make run`` sets it a few hours back for the demo.

    :param value: an ISO-8601 date or datetime (UTC when no offset); default the
        environment variable.
    :raises ValueError: naming the variable when the value does not parse.
    """
    raw = value if value is not None else os.environ.get(START_DATE_ENV, "")
    if not raw:
        return DEFAULT_START_DATE
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"{START_DATE_ENV}={raw!r} is not an ISO-8601 date") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


#: Every DAG starts here; catch-up DAGs backfill from this date at most.
START_DATE = start_date_from_env()

#: DAG ids reserved by the contract (contract §4 (docs/contract.md)).
DAG_IDS = (
    "events_db_migrate",
    "events_ingest",
    "events_export",
    "events_maintenance",
    "events_gdpr_erasure",
    "events_billing",
    "events_health",
    "events_attribution_sync",
    "events_client_check",
    "events_replay",
)


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
        from events_pipeline.orchestration.alerting import notify
    except ImportError:  # alerting arrives with the health issue
        return
    notify(summary, context)


#: Longest run of ONE try of any task of a DAG (``execution_timeout``): a task stuck on a
#: silent endpoint or a lock is killed, fails (alerting on-call) and is retried, instead of
#: holding its DAG's slots for ever. Per DAG, generous against each task's normal duration.
EXECUTION_TIMEOUTS: dict[str, timedelta] = {
    "events_db_migrate": timedelta(hours=1),
    "events_ingest": timedelta(minutes=45),
    "events_export": timedelta(minutes=45),
    "events_maintenance": timedelta(hours=3),
    "events_gdpr_erasure": timedelta(hours=1),
    "events_billing": timedelta(hours=1),
    "events_health": timedelta(minutes=15),
    "events_attribution_sync": timedelta(minutes=20),
    "events_client_check": timedelta(minutes=15),
}
#: ``execution_timeout`` of a DAG missing from :data:`EXECUTION_TIMEOUTS`.
DEFAULT_EXECUTION_TIMEOUT = timedelta(hours=2)
#: Longest run of a whole DAG run (``dagrun_timeout``), retries included: then the run
#: fails and its unfinished tasks stop, so a stuck run no longer takes a ``max_active_runs`` slot.
DAGRUN_TIMEOUTS: dict[str, timedelta] = {
    "events_db_migrate": timedelta(hours=3),
    "events_ingest": timedelta(hours=2),
    "events_export": timedelta(hours=4),
    "events_maintenance": timedelta(hours=10),
    "events_gdpr_erasure": timedelta(hours=4),
    "events_billing": timedelta(hours=4),
    "events_health": timedelta(hours=1),
    "events_attribution_sync": timedelta(hours=1),
    "events_client_check": timedelta(hours=1),
}
#: ``dagrun_timeout`` of a DAG missing from :data:`DAGRUN_TIMEOUTS`.
DEFAULT_DAGRUN_TIMEOUT = timedelta(hours=6)


def dagrun_timeout(dag_id: str) -> timedelta:
    """Return the ``dagrun_timeout`` of a DAG (:data:`DAGRUN_TIMEOUTS`).

    :param dag_id: the DAG.
    """
    return DAGRUN_TIMEOUTS.get(dag_id, DEFAULT_DAGRUN_TIMEOUT)


def default_args(dag_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Return the default args every DAG uses, with ``overrides`` applied.

    Retries with exponential backoff (1 min, 2 min, 4 min... capped at 30 min):
    each task body is idempotent, so a retry is always safe. Every task has an
    ``execution_timeout`` (:data:`EXECUTION_TIMEOUTS` of ``dag_id``, else
    :data:`DEFAULT_EXECUTION_TIMEOUT`).

    :param dag_id: the DAG the args are for (its ``execution_timeout``).
    :param overrides: keys to replace (e.g. ``retries=5`` for a flaky step).
    """
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "on_failure_callback": on_failure_log,
        "execution_timeout": EXECUTION_TIMEOUTS.get(dag_id or "", DEFAULT_EXECUTION_TIMEOUT),
    }
    args.update(overrides)
    return args
