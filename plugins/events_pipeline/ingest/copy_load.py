"""The load transaction: COPY into ``events_log``, registry update and ``ingest_counts``.

Everything here runs inside ONE transaction opened by the caller
(:func:`events_pipeline.ingest.pipeline.load_claimed_file`): the file's events, its
registry row turning ``loaded`` and its per-client counts commit together or
not at all. ``created_at`` is the column default ``now()`` - the transaction's
start - so all rows of a file share one ``created_at``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from events_pipeline.common.compat import bounded_copy_writer
from events_pipeline.common.db import load_sql

if TYPE_CHECKING:
    import psycopg

#: Buffers (<= 128 kB each) the COPY writer thread may hold: bounds memory
#: when Python produces faster than PostgreSQL consumes (~4 MB instead of
#: psycopg's default of 1024 buffers, ~128 MB).
COPY_QUEUE_BUFFERS = 32


def lock_claim(conn: psycopg.Connection, file_id: int) -> tuple[str, str | None, int] | None:
    """Lock the registry row of ``file_id`` for the rest of the transaction.

    :param conn: connection inside the load transaction.
    :param file_id: the registry id.
    :return: ``(status, claimed_by, attempts)`` or None when the row is gone.
    """
    return conn.execute(load_sql("ingest/lock_claim.sql"), {"file_id": file_id}).fetchone()


def copy_events(conn: psycopg.Connection, blocks: Iterable[bytes | memoryview]) -> int:
    """Stream COPY text-format blocks into ``events_log``.

    A queued writer sends the data from a background thread, so building the
    next block (Python) overlaps with PostgreSQL consuming the previous one.

    :param conn: connection inside the load transaction.
    :param blocks: encoded COPY text, whole rows per block (empty blocks are skipped); a
        memoryview is sent without a copy (psycopg cuts it into 128 kB views).
    :return: bytes sent to PostgreSQL.
    """
    sent = 0
    with (
        conn.cursor() as cur,
        cur.copy(
            load_sql("ingest/copy_events.sql"), writer=bounded_copy_writer(cur, COPY_QUEUE_BUFFERS)
        ) as copy,
    ):
        for block in blocks:
            if block:
                copy.write(block)
                sent += len(block)
    return sent


def mark_loaded(conn: psycopg.Connection, **params: Any) -> int:
    """Set the registry row to ``loaded`` with the file's figures (same transaction as the COPY).

    :param conn: connection inside the load transaction.
    :param params: the named parameters of ``include/sql/ingest/mark_loaded.sql``.
    :return: rows updated (1, or 0 when the claim was lost).
    """
    return conn.execute(load_sql("ingest/mark_loaded.sql"), params).rowcount


def write_ingest_counts(conn: psycopg.Connection, file_id: int, per_client: dict[str, int]) -> None:
    """Insert the per-(file, client) counts billing reads (``''`` = unattributed).

    :param conn: connection inside the load transaction.
    :param file_id: the registry id.
    :param per_client: client id -> rows loaded.
    """
    if not per_client:
        return
    clients = sorted(per_client)
    conn.execute(
        load_sql("ingest/ingest_counts.sql"),
        {"file_id": file_id, "client_ids": clients, "counts": [per_client[c] for c in clients]},
    )


def audit_dropped_lines(conn: psycopg.Connection, bucket: str, key: str, per_request: dict[int, int]) -> None:
    """Add one ``gdpr_erasure_audit`` row per request whose visitor's lines the file held (dropped).

    :param conn: connection inside the load transaction.
    :param bucket: the landing bucket.
    :param key: the landing key of the file.
    :param per_request: erasure request id -> lines dropped.
    """
    requests = sorted(per_request)
    conn.execute(
        load_sql("ingest/audit_dropped.sql"),
        {
            "request_ids": requests,
            "lines": [per_request[r] for r in requests],
            "bucket": bucket,
            "key": key,
            "detail": "ingest: lines of the erased visitor from before the erasure, neither loaded "
            "nor rejected; the processed/ copy is written without them",
        },
    )
