"""Bounded batches over a table's heap blocks (TID range scans), and the maintenance log.

Maintenance steps change old rows in batches that each read only their own
slice of blocks (``ctid >= '(lo,0)' AND ctid < '(hi,0)'``), commit, and move
on: a batch holds its row locks for milliseconds, the whole pass reads each
block once, and a crash loses at most one batch (the next run redoes it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from events_pipeline.common.db import load_sql
from events_pipeline.common.settings import Setting, register

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: Heap blocks per batch (8 kB each: 2,000 blocks is 16 MB, ~20-30k events).
DEFAULT_BATCH_BLOCKS = 2000
#: The Variable setting the heap blocks per batch of the maintenance steps that batch by blocks.
SET_BATCH_BLOCKS = register(
    Setting(
        "events_maintenance_batch_blocks",
        DEFAULT_BATCH_BLOCKS,
        "heap blocks (8 kB) per bounded batch of retention/archival",
    )
)


def relation_blocks(conn: psycopg.Connection, relation: str) -> int:
    """Return the number of heap blocks of ``relation``.

    :param conn: an open connection.
    :param relation: the table name (unqualified, in the search path).
    """
    row = conn.execute(load_sql("maintenance/relation_blocks.sql"), {"relation": relation}).fetchone()
    return int(row[0]) if row else 0


def block_ranges(blocks: int, batch_blocks: int = DEFAULT_BATCH_BLOCKS) -> Iterator[tuple[str, str]]:
    """Yield ``(lo, hi)`` TID literals covering blocks ``0 .. blocks`` in slices.

    The last slice is open-ended (up to block 2^32-1) so rows appended while
    the pass runs are covered too.

    :param blocks: the relation's current number of blocks.
    :param batch_blocks: blocks per slice (>= 1).
    """
    if batch_blocks < 1:
        raise ValueError(f"batch_blocks must be >= 1, got {batch_blocks}")
    lo = 0
    while lo + batch_blocks < blocks:
        yield f"({lo},0)", f"({lo + batch_blocks},0)"
        lo += batch_blocks
    yield f"({lo},0)", "(4294967295,0)"


def record(
    conn: psycopg.Connection,
    step: str,
    *,
    started_at: datetime,
    rows: int,
    client_id: str | None = None,
    partition: str | None = None,
    details: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> None:
    """Insert one row into ``maintenance_log`` (the audit trail of a maintenance run).

    :param conn: an open connection (the caller commits).
    :param step: ``retention``, ``archival``, ``gdpr_sweep`` or ``reattribution``.
    :param started_at: when the step started.
    :param rows: rows deleted / archived / anonymised / re-attributed.
    :param client_id: the client concerned, if any.
    :param partition: the partition concerned, if any.
    :param details: extra facts (mode, seconds, bytes...).
    :param run_id: the Airflow run id, if known.
    """
    from psycopg.types.json import Jsonb

    conn.execute(
        load_sql("maintenance/log_insert.sql"),
        {
            "step": step,
            "client_id": client_id,
            "partition": partition,
            "rows": rows,
            "details": Jsonb(details) if details is not None else None,
            "run_id": run_id,
            "started_at": started_at,
        },
    )
