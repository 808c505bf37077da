"""Deadline alerts: on-call hears about a run that is late while it is still running.

A failing task alerts through ``dag_defaults.on_failure_log``; a run that is merely slow
(an export stuck behind a lock, an ingest backlog, a maintenance pass that crawls) fails
nobody until its ``dagrun_timeout`` hours later. Each scheduled DAG therefore carries an
Airflow Deadline Alert: when a run is not finished :data:`RUN_DEADLINES` after it was
queued, the triggerer calls :func:`run_is_late`, which sends one ``LATE`` line through
the same channels as failures (:func:`events_pipeline.orchestration.alerting.notify`).
The deadline counts from the moment the run was queued, so a backfill or a manual
re-run of an old hour gets the same allowance as the scheduled run, not an alert at once;
a backfill queues all its runs at once and starts them behind its own run limit, so a
backfill run still queued at its deadline is logged, not alerted.

The callback runs in the triggerer (an ``AsyncCallback``): the triggerer must import
this package (it does: ``plugins/`` is on its path in the local stack, the Celery stack
and the image).

``airflow dags test`` (``dag.test()``) of Airflow 3.3.2 fails when a run with a deadline
alert finishes (it looks the alert up by its definition instead of its database id): set
:data:`SWITCH` = ``off`` in the environment of such a command to parse the DAGs without
their alerts.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta
from typing import Any

from events_pipeline.common.runbook import runbook_link

log = logging.getLogger("events_pipeline.oncall")

#: Environment variable: ``off`` parses the DAGs without their deadline alerts (for
#: ``airflow dags test`` on Airflow 3.3.2); anything else, or unset, keeps them.
SWITCH = "EVENTS_DEADLINE_ALERTS"

#: How long after being queued a run of each scheduled DAG may take before on-call is
#: told it is late. Well above a normal run (so a busy hour does not page anyone) and
#: well below the DAG's ``dagrun_timeout`` (so the alert comes while there is time to act).
RUN_DEADLINES: dict[str, timedelta] = {
    "events_ingest": timedelta(minutes=30),
    "events_export": timedelta(minutes=45),
    "events_health": timedelta(minutes=20),
    "events_attribution_sync": timedelta(minutes=20),
    "events_gdpr_erasure": timedelta(hours=2),
    "events_maintenance": timedelta(hours=4),
    "events_billing": timedelta(hours=2),
}


def deadline_alert(dag_id: str) -> Any:
    """Return the ``DeadlineAlert`` of a scheduled DAG (queued at + :data:`RUN_DEADLINES`).

    None when the environment variable :data:`SWITCH` is ``off``.

    :param dag_id: a DAG listed in :data:`RUN_DEADLINES`.
    :raises KeyError: for a DAG without a deadline (a manual-only DAG has none).
    """
    if os.environ.get(SWITCH, "").strip().lower() == "off":
        return None
    from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=RUN_DEADLINES[dag_id],
        callback=AsyncCallback(run_is_late, kwargs={"dag_id": dag_id}),
        name=f"{dag_id} late",
    )


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%dT%H:%M}Z"
    if isinstance(value, str) and len(value) >= 16 and value[4:5] == "-":
        return value[:16] + "Z"
    return "?" if value in (None, "") else str(value)


def late_summary(dag_id: str, context: dict[str, Any]) -> str:
    """Build the one-line ``LATE`` summary of a run that missed its deadline.

    :param dag_id: the DAG (the callback's own argument, in case the context lacks it).
    :param context: the simple context Airflow gives deadline callbacks: ``dag_run`` (the
        REST API's DAG run fields) and ``deadline`` (``deadline_time``).
    """
    run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id = run.get("dag_id") or dag_id
    allowance = RUN_DEADLINES.get(dag_id)
    allowed = f"{int(allowance.total_seconds() // 60)} min after it was queued" if allowance else "in time"
    return (
        f"LATE dag={dag_id} run={run.get('dag_run_id', '?')} "
        f"interval={_text(run.get('data_interval_start'))}..{_text(run.get('data_interval_end'))} "
        f"queued={_text(run.get('queued_at'))} state={run.get('state', '?')} "
        f"not finished {allowed} (deadline {_text(deadline.get('deadline_time'))}): "
        f"look at its running and queued tasks | runbook: {runbook_link(dag_id)}"
    )


async def run_is_late(dag_id: str, context: dict[str, Any] | None = None, **_: Any) -> None:
    """Deadline callback (in the triggerer): log the ``LATE`` summary and send it to on-call.

    :param dag_id: the DAG whose run is late.
    :param context: the simple context Airflow passes to deadline callbacks.
    """
    from events_pipeline.orchestration.alerting import notify

    context = context or {}
    summary = late_summary(dag_id, context)
    run = context.get("dag_run") or {}
    if run.get("run_type") == "backfill" and run.get("state") == "queued":
        # a backfill queues all its runs at once and starts them behind its own run limit:
        # one still waiting is not late (the running one alerts if it is)
        log.info("%s; not alerted: a backfill run still queued behind the backfill's run limit", summary)
        return
    log.warning(summary)
    # notify() de-duplicates on (dag, run, task, map index, try): one LATE alert per run
    alert_context = {"dag_run": _RunRef(str(run.get("dag_run_id", "?"))), "ti": _LateMarker(dag_id)}
    await asyncio.to_thread(notify, summary, alert_context)


class _RunRef:
    """The ``dag_run`` of the alert context: what ``alerting`` reads from it."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id


class _LateMarker:
    """The ``ti`` of the alert context: names the DAG and marks the alert as ``late``."""

    def __init__(self, dag_id: str) -> None:
        self.dag_id = dag_id
        self.task_id = "deadline:late"
        self.map_index = -1
        self.try_number = 0
