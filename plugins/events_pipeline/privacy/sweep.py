"""GDPR sweep: anonymise the rows of GDPR clients that still hold a raw IP.

Rows that predate a client's switch to ``privacy_level='gdpr'`` (or that slipped
through any other way) get exactly the ingest treatment (contract §6.3,
:func:`events_pipeline.privacy.ip_treatment.protect_event`): ``ip_address`` truncated,
``raw_event_data.ip_address`` truncated and a keyed ``ip_pseudonym`` added, every
other IP literal value of ``raw_event_data`` (nested, in arrays, escaped) truncated,
``privacy_level='gdpr'``. The stored text is edited, not re-serialised
(``IpProtector.protect_stored``): numbers and every other byte stay as stored.
PostgreSQL finds the rows (set-based, in id order, bounded batches locked
``FOR UPDATE``; nested values through ``jsonb_path_query``); Python applies the
treatment (the HMAC key never goes to the database: pgcrypto is not available
anyway); the batch is written back through COPY into a temporary table and one
UPDATE, in the same transaction. Re-running finds nothing left to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from events_pipeline.common import heap_ranges as batches
from events_pipeline.common.db import connect, load_sql
from events_pipeline.common.settings import VAR_IP_HASH_SECRET, Setting, get_setting, register
from events_pipeline.privacy.fast_treatment import IpProtector
from events_pipeline.privacy.ip_treatment import check_secret

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SET_ROW_BATCH = register(
    Setting("events_gdpr_sweep_batch_rows", 5000, "rows per transaction of the GDPR sweep and re-attribution")
)

#: A row as read for treatment: id, created_at, client_id, ip (text or None), raw_event_data (JSON text).
Row = tuple[int, datetime, str, str | None, str]


def treat_row(row: Row, secret: str | IpProtector) -> tuple[int, datetime, str, str | None, str, bool]:
    """Apply the ingest's GDPR treatment to one row (an edit of its stored text).

    :param row: ``(id, created_at, client_id, ip, raw_json)``.
    :param secret: the pseudonym key, or an :class:`IpProtector` holding it.
    :return: ``(id, created_at, client_id, truncated_ip, raw_json, ip_was_invalid)``.
        A top-level ``ip_address`` that is not an IP literal (cannot be truncated) is
        removed (``null``), never kept.
    """
    rid, created_at, client_id, ip, raw_text = row
    protector = secret if isinstance(secret, IpProtector) else IpProtector(secret)
    text, truncated, invalid = protector.protect_stored(raw_text, ip)
    return rid, created_at, client_id, truncated, text, invalid


def write_treated(conn: psycopg.Connection, treated: Iterable[tuple[Any, ...]]) -> int:
    """Write treated rows back to ``events_log`` (COPY to a temp table, one UPDATE).

    Must be called inside the transaction that locked the rows.

    :param conn: an open connection, in a transaction.
    :param treated: rows ``(id, created_at, client_id, ip, raw_json)``.
    :return: rows updated.
    """
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS gdpr_treated (id bigint, created_at timestamptz, client_id text, "
        "ip_address inet, raw_event_data json) ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cur:
        with cur.copy(
            "COPY gdpr_treated (id, created_at, client_id, ip_address, raw_event_data) FROM STDIN"
        ) as cp:
            for row in treated:
                cp.write_row(row)
        return cur.execute(load_sql("maintenance/gdpr_apply.sql")).rowcount


def treat_and_write(conn: psycopg.Connection, rows: list[Row], secret: str) -> tuple[int, int]:
    """Treat ``rows`` and write them back.

    :param conn: an open connection, in the transaction that locked ``rows``.
    :param rows: rows as read by the candidate queries.
    :param secret: the pseudonym key.
    :return: ``(rows_updated, invalid_ips_removed)``.
    """
    protector = IpProtector(secret)
    out = [treat_row(r, protector) for r in rows]
    invalid = sum(1 for r in out if r[5])
    return write_treated(conn, (r[:5] for r in out)), invalid


def run_gdpr_sweep(
    conn: psycopg.Connection, secret: str, *, batch_rows: int = 5000, run_id: str | None = None
) -> dict[str, int]:
    """Anonymise every row of every GDPR client still holding a raw IP.

    :param conn: an open connection (switched to autocommit; each batch is one transaction).
    :param secret: the pseudonym key (Variable ``events_ip_hash_secret``).
    :param batch_rows: rows per transaction.
    :param run_id: the Airflow run id, for ``maintenance_log``.
    :return: rows treated per client.
    """
    conn.autocommit = True
    clients = [
        r[0] for r in conn.execute("SELECT client_id FROM clients WHERE privacy_level = 'gdpr' ORDER BY 1")
    ]
    query = load_sql("maintenance/gdpr_sweep_candidates.sql")
    per_client: dict[str, int] = {}
    for client_id in clients:
        started = datetime.now(UTC)
        t0 = time.monotonic()
        after_id, treated, invalid = 0, 0, 0
        while True:
            with conn.transaction():
                rows = conn.execute(
                    query, {"client_id": client_id, "after_id": after_id, "batch": batch_rows}
                ).fetchall()
                if not rows:
                    break
                n, bad = treat_and_write(conn, rows, secret)
            treated += n
            invalid += bad
            after_id = rows[-1][0]
        per_client[client_id] = treated
        seconds = time.monotonic() - t0
        log.info(
            "gdpr sweep: client %s: %d row(s) anonymised (%d invalid IP value(s) removed) in %.2fs",
            client_id,
            treated,
            invalid,
            seconds,
        )
        if treated:
            with conn.transaction():
                batches.record(
                    conn,
                    "gdpr_sweep",
                    started_at=started,
                    rows=treated,
                    client_id=client_id,
                    details={"invalid_ips_removed": invalid, "seconds": round(seconds, 3)},
                    run_id=run_id,
                )
    log.info("gdpr sweep: %d GDPR client(s), %d row(s) anonymised", len(clients), sum(per_client.values()))
    return per_client


def run(run_id: str | None = None) -> dict[str, int]:
    """Task entry point: the sweep with the secret and batch size from Airflow Variables.

    :param run_id: the Airflow run id, for ``maintenance_log``.
    """
    secret = check_secret(str(get_setting(VAR_IP_HASH_SECRET)))
    with connect() as conn:
        return run_gdpr_sweep(conn, secret, batch_rows=int(get_setting(SET_ROW_BATCH.name)), run_id=run_id)
