"""Daily partitions of ``events_log`` (range on ``created_at``, UTC days).

The pipeline creates partitions ahead of time (``ensure_daily_partitions``),
so the DEFAULT partition only catches rows of days nobody prepared (a clock far
off, a restore of old data). Creating a partition for a day whose rows already
sit in the default partition moves them in the same transaction.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from events_pipeline.common.db import advisory_lock

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

PARENT = "events_log"
DEFAULT_PARTITION = "events_log_default"
LOCK_NAME = "events_pipeline.partitions"


def partition_name(day: date) -> str:
    """Return the partition table name for ``day`` (``events_log_p20261127``).

    :param day: the UTC day the partition holds.
    """
    return f"{PARENT}_p{day:%Y%m%d}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Return the UTC ``[start, end)`` of ``day``.

    :param day: a calendar day.
    """
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def existing_partitions(conn: psycopg.Connection) -> dict[date, str]:
    """Map each day that has a daily partition to its table name.

    :param conn: an open connection.
    """
    rows = conn.execute(
        """
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = %s AND c.relname ~ '_p[0-9]{8}$'
        """,
        (PARENT,),
    ).fetchall()
    out: dict[date, str] = {}
    for (name,) in rows:
        out[datetime.strptime(name[-8:], "%Y%m%d").date()] = name
    return out


#: How long creating a partition waits for its locks before giving up until the next run.
DEFAULT_LOCK_TIMEOUT_MS = 2000


def ensure_daily_partitions(
    conn: psycopg.Connection,
    first_day: date,
    last_day: date,
    *,
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
) -> list[str]:
    """Create the missing daily partitions from ``first_day`` to ``last_day`` inclusive.

    Rows of those days already in the DEFAULT partition are moved into the new
    partition in the same transaction. Safe to call concurrently (advisory lock)
    and repeatedly (existing partitions are left alone).

    Attaching a partition needs an exclusive lock on the DEFAULT partition; a
    request queued behind a long export or erasure would block every query after
    it. So each partition waits at most ``lock_timeout_ms`` for its locks; when
    they are not granted, the missing days are left to the next call (ingest
    calls this every run, maintenance daily) and their rows wait in the DEFAULT
    partition meanwhile: nothing is lost.

    :param conn: an open connection (autocommit is switched on).
    :param first_day: first UTC day to cover.
    :param last_day: last UTC day to cover.
    :param lock_timeout_ms: the longest wait for the locks of one partition.
    :return: names of the partitions created.
    """
    import psycopg

    conn.autocommit = True
    created: list[str] = []
    with advisory_lock(conn, LOCK_NAME):
        have = existing_partitions(conn)
        day = first_day
        while day <= last_day:
            if day not in have:
                name = partition_name(day)
                start, end = day_bounds(day)
                try:
                    with conn.transaction():
                        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{lock_timeout_ms}ms",))
                        moved = _create_partition(conn, name, start, end)
                except psycopg.errors.LockNotAvailable:
                    log.warning(
                        "partition %s for [%s, %s) not created now: its locks on %s / %s were not "
                        "granted within %d ms (a long export, retention or erasure holds them); the next "
                        "run retries, and that day's rows wait in %s meanwhile",
                        name,
                        start.isoformat(),
                        end.isoformat(),
                        PARENT,
                        DEFAULT_PARTITION,
                        lock_timeout_ms,
                        DEFAULT_PARTITION,
                    )
                    break
                created.append(name)
                log.info(
                    "created partition %s for [%s, %s)%s",
                    name,
                    start.isoformat(),
                    end.isoformat(),
                    f", moved {moved} rows from {DEFAULT_PARTITION}" if moved else "",
                )
            day += timedelta(days=1)
    return created


def _create_partition(conn: psycopg.Connection, name: str, start: datetime, end: datetime) -> int:
    from psycopg import sql

    ident = sql.Identifier(name)
    parent = sql.Identifier(PARENT)
    default = sql.Identifier(DEFAULT_PARTITION)
    conn.execute(
        sql.SQL("CREATE TABLE {p} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            p=ident, parent=parent
        )
    )
    # A CHECK matching the bound lets ATTACH skip its validation scan.
    conn.execute(
        sql.SQL("ALTER TABLE {p} ADD CONSTRAINT {c} CHECK (created_at >= {s} AND created_at < {e})").format(
            p=ident,
            c=sql.Identifier(f"{name}_bound"),
            s=sql.Literal(start),
            e=sql.Literal(end),
        )
    )
    moved = conn.execute(
        sql.SQL(
            "WITH gone AS (DELETE FROM {d} WHERE created_at >= %s AND created_at < %s RETURNING *) "
            "INSERT INTO {p} SELECT * FROM gone"
        ).format(d=default, p=ident),
        (start, end),
    ).rowcount
    conn.execute(
        sql.SQL("ALTER TABLE {parent} ATTACH PARTITION {p} FOR VALUES FROM ({s}) TO ({e})").format(
            parent=parent, p=ident, s=sql.Literal(start), e=sql.Literal(end)
        )
    )
    return moved


def ensure_partitions_around(
    conn: psycopg.Connection, now: datetime | None = None, *, back: int = 1, ahead: int = 3
) -> list[str]:
    """Make sure partitions exist from ``back`` days before to ``ahead`` days after now.

    :param conn: an open connection.
    :param now: the reference time (UTC now by default).
    :param back: days before today to cover.
    :param ahead: days after today to cover.
    """
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return ensure_daily_partitions(conn, today - timedelta(days=back), today + timedelta(days=ahead))
