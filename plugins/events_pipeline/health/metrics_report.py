"""The original design's "key performance queries", run each hour and logged as one compact table.

The queries live in ``include/sql/monitoring/<name>.sql`` (corrected versions
of the original design's: partition-aware sizes, the right ``pg_stat_user_indexes``
columns, no division by zero) and read the run's data interval, so a
backfilled run reports its own hour. Nothing here fails on a bad value: the
health checks do that; this is the dashboard in the task log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from events_pipeline.common.db import as_dicts, connect, load_sql

log = logging.getLogger(__name__)

#: The monitoring queries, in the order they are logged.
QUERIES = (
    "batch_consistency",
    "attribution_rate",
    "export_pipeline_health",
    "table_size",
    "index_usage",
)


def _fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        from events_pipeline.health.checks import fmt_ts

        return fmt_ts(value)
    if isinstance(value, Decimal | float):
        number = float(value)
        # whole numbers (sizes, counts) in full: 1933312, not 1.93331e+06
        return str(int(number)) if number.is_integer() and abs(number) < 1e18 else f"{number:.6g}"
    return str(value)


def format_table(results: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> str:
    """Render query results as one compact text table: ``query | result``.

    Each result row becomes one line of ``column=value`` pairs; a query that
    returned no row shows ``(no rows)``.

    :param results: ``(query name, rows as mappings)`` pairs.
    """
    lines: list[tuple[str, str]] = []
    for name, rows in results:
        if not rows:
            lines.append((name, "(no rows)"))
        for row in rows:
            lines.append((name, " ".join(f"{k}={_fmt_value(v)}" for k, v in row.items())))
    width = max([len("query"), *(len(n) for n, _ in lines)])
    out = [f"{'query'.ljust(width)} | result", f"{'-' * width}-+-{'-' * 40}"]
    out.extend(f"{n.ljust(width)} | {r}" for n, r in lines)
    return "\n".join(out)


def run_query(conn: Any, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run ``include/sql/monitoring/<name>.sql`` and return its rows as dicts.

    :param conn: an open psycopg connection to the events database.
    :param name: the query name (a member of :data:`QUERIES`).
    :param params: ``interval_start`` / ``interval_end``; bound only when the query uses them.
    """
    sql = load_sql(f"monitoring/{name}.sql")
    with conn.cursor() as cur:
        cur.execute(sql, dict(params) if "%(" in sql else None)
        return as_dicts(cur)


def collect(
    conn: Any, interval_start: datetime, interval_end: datetime
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Run every monitoring query for one data interval.

    :param conn: an open psycopg connection to the events database.
    :param interval_start: start of the run's data interval.
    :param interval_end: end of the run's data interval.
    """
    params = {"interval_start": interval_start, "interval_end": interval_end}
    return [(name, run_query(conn, name, params)) for name in QUERIES]


def log_metrics(
    interval_start: datetime, interval_end: datetime, conn_id: str | None = None
) -> dict[str, list[dict[str, str]]]:
    """Run the monitoring queries and log their results as one table.

    :param interval_start: start of the run's data interval.
    :param interval_end: end of the run's data interval.
    :param conn_id: events database connection (``None``: ``events_db``).
    :return: the results, values as strings (small; fit for XCom).
    """
    started = time.monotonic()
    with connect(*([conn_id] if conn_id else []), autocommit=True) as conn:
        results = collect(conn, interval_start, interval_end)
    seconds = time.monotonic() - started
    log.info(
        "monitoring queries for %s..%s (%.2f s):\n%s",
        _fmt_value(interval_start),
        _fmt_value(interval_end),
        seconds,
        format_table(results),
    )
    return {name: [{k: _fmt_value(v) for k, v in row.items()} for row in rows] for name, rows in results}
