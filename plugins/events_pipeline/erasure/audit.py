"""The audit trail of erasure requests: one ``gdpr_erasure_audit`` row per copy a request touched.

Rows name the bucket and key (``bucket`` NULL and ``key`` the table for database
rows), the action (``rows_deleted``, ``rewritten``, ``removed``, ``listed_for_client``),
how many lines (rows) of the request's visitor were removed, a note and the time.
They never hold the visitor id. An object is recorded *before* it is written, so a
crash never leaves an unrecorded change; when the write then fails the row is taken
back (:meth:`AuditTrail.forget`). Read it per request with the view
``gdpr_erasure_audit_trail`` or :func:`trail`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from events_pipeline.common.db import as_dicts, load_sql

if TYPE_CHECKING:
    import psycopg

#: The table name recorded as the ``key`` of database rows.
EVENTS_TABLE = "events_log"
#: The ``key`` of the visitor's rows deleted from the backup visitor index (hours purged).
VISITOR_INDEX_TABLE = "backup_visitor_hours"


class AuditTrail:
    """Writes audit rows through an autocommit connection (each call commits).

    :param conn: an autocommit connection to the events database.
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def record(
        self,
        lines_per_request: Mapping[int, int | None],
        *,
        bucket: str | None,
        key: str,
        action: str,
        detail: str | None = None,
    ) -> list[int]:
        """Add one row per request for one copy; return their ids.

        :param lines_per_request: request id -> lines (rows) of its visitor removed (None: not counted).
        :param bucket: the S3 bucket (None: the events database).
        :param key: the object key (or the table name).
        :param action: ``rows_deleted``, ``rewritten``, ``removed`` or ``listed_for_client``.
        :param detail: a note (never the visitor id).
        """
        if not lines_per_request:
            return []
        ids = sorted(lines_per_request)
        rows = self.conn.execute(
            load_sql("erasure/audit_insert.sql"),
            {
                "request_ids": ids,
                "lines": [lines_per_request[i] for i in ids],
                "bucket": bucket,
                "key": key,
                "action": action,
                "detail": detail,
            },
        ).fetchall()
        return [int(r[0]) for r in rows]

    def forget(self, audit_ids: list[int]) -> None:
        """Take back rows recorded for a write that then failed.

        :param audit_ids: ids returned by :meth:`record`.
        """
        if audit_ids:
            self.conn.execute(load_sql("erasure/audit_forget.sql"), {"audit_ids": audit_ids})


def trail(conn: psycopg.Connection, request_id: int) -> list[dict[str, Any]]:
    """Return a request's audit rows, oldest first.

    Each row: ``at``, ``action``, ``bucket``, ``key``, ``lines_removed``, ``detail``.

    :param conn: an open connection.
    :param request_id: the request.
    """
    return as_dicts(conn.execute(load_sql("erasure/audit_trail.sql"), {"request_id": request_id}))


def format_trail(rows: list[dict[str, Any]]) -> str:
    """Render audit rows as an aligned text table for the task log.

    :param rows: rows of :func:`trail`.
    """
    if not rows:
        return "  (nothing held the visitor)"
    lines = [f"  {'at (UTC)':19}  {'action':17}  {'lines':>7}  where"]
    for r in rows:
        where = f"s3://{r['bucket']}/{r['key']}" if r["bucket"] else f"table {r['key']}"
        lines_removed = "-" if r["lines_removed"] is None else str(r["lines_removed"])
        note = f"  ({r['detail']})" if r["detail"] else ""
        lines.append(f"  {r['at']:%Y-%m-%d %H:%M:%S}  {r['action']:17}  {lines_removed:>7}  {where}{note}")
    return "\n".join(lines)
