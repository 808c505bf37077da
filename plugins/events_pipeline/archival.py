"""Archival: events still ``pending`` N days (default 30) after ``created_at`` become ``archived``.

Only partitions of days before the cutoff are read, in bounded batches of
heap blocks (one commit each), and a day that lies wholly before the cutoff is
marked done in ``partition_maintenance``: it is scanned once, not every day
for ever. The DEFAULT partition is always looked at (it is normally empty).
Counts per client go to the log and to ``maintenance_log``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from events_pipeline import batches
from events_pipeline.db import connect, load_sql
from events_pipeline.partitions import DEFAULT_PARTITION, day_bounds, existing_partitions
from events_pipeline.settings import Setting, get_setting, register

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SET_ARCHIVE_AFTER_DAYS = register(
    Setting("events_archive_after_days", 30, "pending events older than this many days become archived")
)


def run_archival(
    conn: psycopg.Connection,
    now: datetime | None = None,
    *,
    after_days: int = 30,
    batch_blocks: int = batches.DEFAULT_BATCH_BLOCKS,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Archive every pending event created more than ``after_days`` before ``now``.

    :param conn: an open connection (switched to autocommit; each batch commits).
    :param now: the reference time (UTC now by default).
    :param after_days: age in days after which a pending event is archived.
    :param batch_blocks: heap blocks per batch.
    :param run_id: the Airflow run id, for ``maintenance_log``.
    :return: ``{"cutoff", "archived", "per_client", "partitions"}``.
    """
    from psycopg import sql

    now = (now or datetime.now(UTC)).astimezone(UTC)
    cutoff = now - timedelta(days=after_days)
    conn.autocommit = True
    started = datetime.now(UTC)
    done = {
        r[0] for r in conn.execute("SELECT day FROM partition_maintenance WHERE archival_done_at IS NOT NULL")
    }
    targets = [
        (day, name)
        for day, name in sorted(existing_partitions(conn).items())
        if day_bounds(day)[0] < cutoff and day not in done
    ]
    targets.append((None, DEFAULT_PARTITION))
    template = load_sql("maintenance/archive_batch.sql")
    per_client: Counter[str] = Counter()
    t0 = time.monotonic()
    for day, name in targets:
        query = sql.SQL(template).format(partition=sql.Identifier(name))
        part_counts: Counter[str] = Counter()
        for lo, hi in batches.block_ranges(batches.relation_blocks(conn, name), batch_blocks):
            for client_id, n in conn.execute(query, {"lo": lo, "hi": hi, "cutoff": cutoff}).fetchall():
                part_counts[client_id] += int(n)
        per_client.update(part_counts)
        if day is not None and day_bounds(day)[1] <= cutoff:
            conn.execute(
                "INSERT INTO partition_maintenance (day, archival_done_at) VALUES (%s, now()) "
                "ON CONFLICT (day) DO UPDATE SET archival_done_at = excluded.archival_done_at",
                (day,),
            )
        if part_counts:
            log.info(
                "archival: %s: %d row(s) archived %s", name, sum(part_counts.values()), dict(part_counts)
            )
    seconds = time.monotonic() - t0
    total = sum(per_client.values())
    with conn.transaction():
        for client_id, n in sorted(per_client.items()):
            batches.record(
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
    log.info(
        "archival: %d row(s) archived (created before %s) over %d partition(s) in %.2fs",
        total,
        cutoff.isoformat(),
        len(targets),
        seconds,
    )
    return {
        "cutoff": cutoff.isoformat(),
        "archived": total,
        "per_client": dict(per_client),
        "partitions": [name for _, name in targets],
    }


def run(run_id: str | None = None) -> dict[str, Any]:
    """Task entry point: archival with the settings from Airflow Variables.

    :param run_id: the Airflow run id, for ``maintenance_log``.
    """
    from events_pipeline.retention import SET_BATCH_BLOCKS

    with connect() as conn:
        return run_archival(
            conn,
            after_days=int(get_setting(SET_ARCHIVE_AFTER_DAYS.name)),
            batch_blocks=int(get_setting(SET_BATCH_BLOCKS.name)),
            run_id=run_id,
        )
