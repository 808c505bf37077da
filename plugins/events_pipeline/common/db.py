"""Connections to the events database and the SQL files under ``include/sql``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from events_pipeline.common.errors import ServiceUnreachableError, SettingError
from events_pipeline.common.settings import EVENTS_DB_CONN_ID, SQL_ROOT

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


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
        raise SettingError(
            f"Airflow connection {conn_id!r} is not defined: create it (Admin > Connections) "
            f"or set AIRFLOW_CONN_{conn_id.upper()} to a postgres:// URI"
        ) from exc
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
