"""Archival: events still ``pending`` N days (default 30) after ``created_at`` become ``archived``.

Only partitions of days before the cutoff are looked at, and a day that lies
wholly before the cutoff is marked done in ``partition_maintenance``: it is
handled once, not every day for ever. Per partition:

- **indexed**: when the partial indexes bound the candidates (unclaimed or
  unattributed rows) at :data:`INDEXED_MAX_ROWS` or fewer - the normal case, a
  day the export published - one UPDATE reaches exactly those rows through the
  indexes, without reading the rest of the day;
- **blocks**: otherwise, bounded batches of heap blocks (one commit each).

The DEFAULT partition is always looked at (it is normally empty). Counts per
client go to the log and to ``maintenance_log``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from events_pipeline.common import heap_ranges
from events_pipeline.common.db import connect, load_sql
from events_pipeline.common.heap_ranges import SET_BATCH_BLOCKS
from events_pipeline.common.partitions import DEFAULT_PARTITION, day_bounds, existing_partitions
from events_pipeline.common.settings import Setting, get_setting, register

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SET_ARCHIVE_AFTER_DAYS = register(
    Setting("events_archive_after_days", 30, "pending events older than this many days become archived")
)


#: At most this many candidate rows (bound from the partial indexes): one indexed UPDATE.
INDEXED_MAX_ROWS = 50_000


def run_archival(
    conn: psycopg.Connection,
    now: datetime | None = None,
    *,
    after_days: int = 30,
    batch_blocks: int = heap_ranges.DEFAULT_BATCH_BLOCKS,
    run_id: str | None = None,
    indexed_max_rows: int = INDEXED_MAX_ROWS,
) -> dict[str, Any]:
    """Archive every pending event created more than ``after_days`` before ``now``.

    :param conn: an open connection (switched to autocommit; each batch commits).
    :param now: the reference time (UTC now by default).
    :param after_days: age in days after which a pending event is archived.
    :param batch_blocks: heap blocks per batch.
    :param run_id: the Airflow run id, for ``maintenance_log``.
    :param indexed_max_rows: largest candidate bound handled by one indexed UPDATE
        (0: always block batches).
    :return: ``{"cutoff", "archived", "per_client", "partitions", "modes"}`` (mode per partition:
        ``skip``, ``indexed`` or ``blocks``).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    cutoff = now - timedelta(days=after_days)
    conn.autocommit = True
    started = datetime.now(UTC)
    targets = _targets(conn, cutoff)
    per_client: Counter[str] = Counter()
    modes: dict[str, str] = {}
    t0 = time.monotonic()
    for day, name in targets:
        modes[name], part_counts = _archive_partition(conn, name, cutoff, batch_blocks, indexed_max_rows)
        per_client.update(part_counts)
        if day is not None and day_bounds(day)[1] <= cutoff:
            _mark_done(conn, day)
    seconds = time.monotonic() - t0
    _record(conn, per_client, started=started, cutoff=cutoff, run_id=run_id)
    log.info(
        "archival: %d row(s) archived (created before %s) over %d partition(s) in %.2fs",
        sum(per_client.values()),
        cutoff.isoformat(),
        len(targets),
        seconds,
    )
    return {
        "cutoff": cutoff.isoformat(),
        "archived": sum(per_client.values()),
        "per_client": dict(per_client),
        "partitions": [name for _, name in targets],
        "modes": modes,
    }


def _targets(conn: psycopg.Connection, cutoff: datetime) -> list[tuple[date | None, str]]:
    """The partitions to look at: days before ``cutoff`` not yet marked done, then the DEFAULT one.

    :param conn: an autocommit connection.
    :param cutoff: pending events created before it are archived.
    :return: ``(day, partition)`` pairs, oldest first; the DEFAULT partition's day is None.
    """
    done = {
        r[0] for r in conn.execute("SELECT day FROM partition_maintenance WHERE archival_done_at IS NOT NULL")
    }
    targets: list[tuple[date | None, str]] = [
        (day, name)
        for day, name in sorted(existing_partitions(conn).items())
        if day_bounds(day)[0] < cutoff and day not in done
    ]
    targets.append((None, DEFAULT_PARTITION))
    return targets


def _archive_partition(
    conn: psycopg.Connection, name: str, cutoff: datetime, batch_blocks: int, indexed_max_rows: int
) -> tuple[str, Counter[str]]:
    """Archive the old pending rows of one partition, by one indexed UPDATE or by block batches.

    :param conn: an autocommit connection (each statement commits).
    :param name: the partition's table name.
    :param cutoff: pending events created before it are archived.
    :param batch_blocks: heap blocks per batch.
    :param indexed_max_rows: largest candidate bound handled by one indexed UPDATE.
    :return: the mode (``skip``, ``indexed`` or ``blocks``) and the rows archived per client.
    """
    from psycopg import sql

    ident = sql.Identifier(name)
    counts: Counter[str] = Counter()
    bound_query = sql.SQL(load_sql("maintenance/archive_candidates_bound.sql")).format(partition=ident)
    bound = int(conn.execute(bound_query, {"cutoff": cutoff}).fetchone()[0])  # type: ignore[index]
    if bound == 0:
        return "skip", counts  # no unclaimed or unattributed row at all
    if bound <= indexed_max_rows:
        mode = "indexed"
        query = sql.SQL(load_sql("maintenance/archive_indexed.sql")).format(partition=ident)
        for client_id, n in conn.execute(query, {"cutoff": cutoff}).fetchall():
            counts[client_id] += int(n)
    else:
        mode = "blocks"
        query = sql.SQL(load_sql("maintenance/archive_batch.sql")).format(partition=ident)
        for lo, hi in heap_ranges.block_ranges(heap_ranges.relation_blocks(conn, name), batch_blocks):
            for client_id, n in conn.execute(query, {"lo": lo, "hi": hi, "cutoff": cutoff}).fetchall():
                counts[client_id] += int(n)
    if counts:
        log.info(
            "archival: %s (%s, at most %d candidate(s)): %d row(s) archived %s",
            name,
            mode,
            bound,
            sum(counts.values()),
            dict(counts),
        )
    return mode, counts


def _mark_done(conn: psycopg.Connection, day: date) -> None:
    """Record in ``partition_maintenance`` that ``day`` lies wholly before the cutoff: never looked at again.

    :param conn: an autocommit connection.
    :param day: the partition's day.
    """
    conn.execute(
        "INSERT INTO partition_maintenance (day, archival_done_at) VALUES (%s, now()) "
        "ON CONFLICT (day) DO UPDATE SET archival_done_at = excluded.archival_done_at",
        (day,),
    )


def _record(
    conn: psycopg.Connection,
    per_client: Counter[str],
    *,
    started: datetime,
    cutoff: datetime,
    run_id: str | None,
) -> None:
    """Write one ``maintenance_log`` row per client (one transaction) and log each client's count.

    :param conn: an autocommit connection.
    :param per_client: rows archived per client (``""``: unattributed).
    :param started: when the pass started.
    :param cutoff: the pass's cutoff.
    :param run_id: the Airflow run id, if known.
    """
    with conn.transaction():
        for client_id, n in sorted(per_client.items()):
            heap_ranges.record(
                conn,
                "archival",
                started_at=started,
                rows=n,
                client_id=client_id or None,
                details={"cutoff": cutoff.isoformat()},
                run_id=run_id,
            )
    for client_id, n in sorted(per_client.items()):
        log.info("archival: client %s: %d pending row(s) archived", client_id or "<unattributed>", n)


def run(run_id: str | None = None) -> dict[str, Any]:
    """Task entry point: archival with the settings from Airflow Variables.

    :param run_id: the Airflow run id, for ``maintenance_log``.
    """
    with connect() as conn:
        return run_archival(
            conn,
            after_days=int(get_setting(SET_ARCHIVE_AFTER_DAYS.name)),
            batch_blocks=int(get_setting(SET_BATCH_BLOCKS.name)),
            run_id=run_id,
        )
