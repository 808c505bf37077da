"""Billing rollups: ``billing_daily`` per client and UTC day.

Figures come from tables retention never touches (``ingest_counts``,
``landing_files``, ``export_runs``), so deleting events never changes a day's
figures. Each day is recomputed whole (delete + insert in one transaction:
idempotent, backfillable) and recorded in ``billing_runs``, which is the gate
retention checks before deleting a day's rows. A daily run recomputes its own
day and the ``settle_days`` before it, so exports that finish after midnight
(the day's last hour, retries) are counted without a manual backfill.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from events_pipeline.common.db import as_dicts, connect, load_sql
from events_pipeline.common.run_params import optional_day_range
from events_pipeline.common.settings import Setting, get_setting, register

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: ``billing_daily.client_id`` of the per-day totals row (not a valid client id).
TOTAL_ROW = "_total"

SET_SETTLE_DAYS = register(
    Setting("events_billing_settle_days", 2, "days before a billing run's own day that it recomputes")
)
#: Trigger-form fields of ``events_billing`` (a manual recompute of a date range).
FIRST_DAY_PARAM = "first_day"
LAST_DAY_PARAM = "last_day"
#: The longest range one manual run recomputes.
MAX_RECOMPUTE_DAYS = 400


def compute_day(conn: psycopg.Connection, day: date, *, run_id: str | None = None) -> list[dict[str, Any]]:
    """Recompute ``billing_daily`` for one day and mark it in ``billing_runs``.

    :param conn: an open connection, inside the caller's transaction (one per day).
    :param day: the UTC day.
    :param run_id: the Airflow run id, recorded in ``billing_runs``.
    :return: the day's rows as dicts.
    """
    params = {"day": day}
    conn.execute(load_sql("billing/delete_day.sql"), params)
    conn.execute(load_sql("billing/rollup_day.sql"), params)
    cur = conn.execute(
        "SELECT client_id, events_received, events_rejected, events_unattributed, events_exported, "
        "bytes_exported, last_export_at FROM billing_daily WHERE day = %s ORDER BY client_id",
        (day,),
    )
    rows = as_dicts(cur)
    clients = sum(1 for r in rows if r["client_id"] != TOTAL_ROW)
    conn.execute(load_sql("billing/mark_day.sql"), {"day": day, "clients": clients, "run_id": run_id})
    return rows


def compute_days(
    conn: psycopg.Connection, first_day: date, last_day: date, *, run_id: str | None = None
) -> dict[str, Any]:
    """Recompute billing for every day from ``first_day`` to ``last_day`` inclusive.

    :param conn: an open connection.
    :param first_day: first UTC day.
    :param last_day: last UTC day.
    :param run_id: the Airflow run id.
    :return: per day, the totals row.
    """
    conn.autocommit = True
    out: dict[str, Any] = {}
    day = first_day
    while day <= last_day:
        t0 = time.monotonic()
        with conn.transaction():
            rows = compute_day(conn, day, run_id=run_id)
        total = next((r for r in rows if r["client_id"] == TOTAL_ROW), {})
        log.info(
            "billing %s: %d client row(s); received=%s rejected=%s unattributed=%s exported=%s "
            "bytes=%s (%.2fs)",
            day,
            len(rows) - 1,
            total.get("events_received"),
            total.get("events_rejected"),
            total.get("events_unattributed"),
            total.get("events_exported"),
            total.get("bytes_exported"),
            time.monotonic() - t0,
        )
        for r in rows:
            if r["client_id"] != TOTAL_ROW:
                log.info(
                    "billing %s client %s: received=%d exported=%d bytes=%d last_export_at=%s",
                    day,
                    r["client_id"],
                    r["events_received"],
                    r["events_exported"],
                    r["bytes_exported"],
                    r["last_export_at"],
                )
        out[day.isoformat()] = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in total.items()
        }
        day += timedelta(days=1)
    return out


def days_to_bill(
    data_interval_start: datetime, data_interval_end: datetime, params: dict[str, Any] | None = None
) -> tuple[date, date, str]:
    """Return ``(first day, last day, why)`` a run recomputes.

    The form's range when a manual run gives one; otherwise the days of the data
    interval plus the settle window before them.

    :param data_interval_start: start of the run's interval (a UTC midnight for the daily DAG).
    :param data_interval_end: end of the interval (exclusive).
    :param params: the run's params (trigger form).
    :raises ParamError: the form's range is invalid, naming the field.
    """
    chosen = optional_day_range(params, FIRST_DAY_PARAM, LAST_DAY_PARAM, max_days=MAX_RECOMPUTE_DAYS)
    if chosen is not None:
        return chosen[0], chosen[1], "range from the trigger form"
    settle = int(get_setting(SET_SETTLE_DAYS.name))
    start = data_interval_start.astimezone(UTC)
    end = data_interval_end.astimezone(UTC)
    first = start.date() - timedelta(days=settle)
    last = max(start.date(), (end - timedelta(microseconds=1)).date())
    return first, last, f"data interval plus {settle} settle day(s)"


def run(
    data_interval_start: datetime,
    data_interval_end: datetime,
    run_id: str | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Task entry point: bill the form's day range, or the data interval plus its settle window.

    :param data_interval_start: start of the run's interval (a UTC midnight for the daily DAG).
    :param data_interval_end: end of the interval (exclusive).
    :param run_id: the Airflow run id.
    :param params: the run's params (``first_day`` / ``last_day`` of the trigger form).
    """
    first, last, why = days_to_bill(data_interval_start, data_interval_end, params)
    log.info("billing: recomputing %s..%s (%d day(s), %s)", first, last, (last - first).days + 1, why)
    with connect() as conn:
        return compute_days(conn, first, last, run_id=run_id)
