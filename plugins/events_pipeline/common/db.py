"""Connections to the events database and the SQL files under ``include/sql``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from events_pipeline.common.errors import ServiceUnreachableError, SettingError
from events_pipeline.common.settings import EVENTS_DB_CONN_ID, SQL_ROOT, missing_connection

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: How a PostgreSQL connection is written in ``AIRFLOW_CONN_<ID>`` (for error messages).
POSTGRES_CONN_HOW = "a postgres:// URI (postgres://user:password@host:5432/database)"


@cache
def load_sql(name: str) -> str:
    """Return the text of ``include/sql/<name>``.

    :param name: path below ``include/sql``, e.g. ``"export/claim_rows.sql"``.
    :raises FileNotFoundError: naming the full path that was looked for.
    """
    path = SQL_ROOT / name
    if not path.is_file():
        raise FileNotFoundError(f"SQL file {path} does not exist")
    return path.read_text(encoding="utf-8")


def _hook(conn_id: str) -> Any:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id)


@contextmanager
def connect(conn_id: str = EVENTS_DB_CONN_ID, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """Open a psycopg 3 connection through the Airflow connection ``conn_id``.

    The connection is closed on exit; an open transaction is committed when the
    block ends normally and rolled back when it raises.

    :param conn_id: Airflow connection id of the events database.
    :param autocommit: open the connection in autocommit mode.
    :raises SettingError: the connection is not defined (names it).
    :raises ServiceUnreachableError: the server refused or did not answer (names
        the connection and its host).
    """
    import psycopg
    from airflow.exceptions import AirflowNotFoundException

    try:
        hook = _hook(conn_id)
        conn = hook.get_conn()
    except AirflowNotFoundException as exc:
        raise missing_connection(conn_id, POSTGRES_CONN_HOW) from exc
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ServiceUnreachableError(
            f"cannot connect to PostgreSQL through Airflow connection {conn_id!r}: {first_line}"
        ) from exc
    if not isinstance(conn, psycopg.Connection):  # pragma: no cover - provider misconfigured
        raise SettingError(f"connection {conn_id!r} did not give a psycopg 3 connection: {type(conn)}")
    conn.autocommit = autocommit
    try:
        with conn:
            yield conn
    finally:
        if not conn.closed:
            conn.close()


def advisory_lock_key(name: str) -> int:
    """Return a stable signed 64-bit advisory-lock key for ``name``.

    :param name: a lock name such as ``"events_pipeline.migrations"``.
    """
    import hashlib

    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_lock(conn: psycopg.Connection, name: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold the session advisory lock ``name`` for the ``with`` block.

    :param conn: the connection that holds the lock (session level: it survives
        commits inside the block and is released at its end, or when the session ends).
    :param name: the lock's name, hashed by :func:`advisory_lock_key`.
    :param wait: wait for the lock (``pg_advisory_lock``); with ``False`` try once
        (``pg_try_advisory_lock``) and yield whether it was acquired.
    :returns: yields ``True`` when the lock is held; ``False`` only with ``wait=False``
        when another session holds it (nothing to release then).
    """
    key = advisory_lock_key(name)
    if wait:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        acquired = True
    else:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        acquired = bool(row and row[0])
    try:
        yield acquired
    finally:
        if acquired and not conn.closed:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except Exception:  # noqa: BLE001 - the session's end releases it anyway
                log.warning("could not release advisory lock %r; it is released when the session ends", name)


def as_dict(cursor: Any, row: Any | None = None) -> dict[str, Any] | None:
    """Return one row of a DB-API ``cursor`` as a column-name dict (``None`` at the end).

    :param cursor: an executed DB-API cursor (psycopg or an Airflow hook's).
    :param row: the row when already fetched; by default the next one is fetched.
    """
    if row is None:
        row = cursor.fetchone()
        if row is None:
            return None
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def as_dicts(cursor: Any) -> list[dict[str, Any]]:
    """Return all remaining rows of a DB-API ``cursor`` as column-name dicts.

    :param cursor: an executed DB-API cursor (psycopg or an Airflow hook's).
    """
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
