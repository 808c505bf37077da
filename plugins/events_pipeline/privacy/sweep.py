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

What it reads follows what can be untreated, not the stored history
(``gdpr_sweep_state``, migration 0120): a row treated at ingest, by re-attribution,
an export or an earlier sweep stays treated, so a client's daily sweep reads only the
rows created since its last completed sweep started (the days since, partition by
partition; older partitions are not opened). A client gets one **full pass** over every
partition when it was never swept, when its ``privacy_level`` changed since (a trigger
on ``clients`` counts the changes: rows stored or attributed while it was ``standard``
can be of any age), or when its last sweep applied an older treatment rule
(:data:`RULE_VERSION`); the pass is recorded, so it runs once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from events_pipeline.common import heap_ranges as batches
from events_pipeline.common.db import connect, load_sql
from events_pipeline.common.partitions import DEFAULT_PARTITION, day_bounds, existing_partitions
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


#: Version of the treatment rule the sweep applies. Bump it when the treatment starts to
#: catch values it did not before: the next sweep then makes one full pass over every GDPR
#: client's rows, and records it per client (``gdpr_sweep_state.rule_version``), so it runs
#: once. 1: ``ip_address`` and ``raw_event_data.ip_address``; 2 (2026-12): every nested or
#: escaped IP value and IPv6 forms that embed an IPv4 address.
RULE_VERSION = 2

#: ``since`` of a full pass: every row of the client, whatever its age.
EVERY_ROW_SINCE = "-infinity"


@dataclass
class ClientPlan:
    """What one GDPR client's sweep reads.

    :param client_id: the client.
    :param changes: its ``level_changes`` when the sweep started.
    :param since: rows created at or after it are read; None for a full pass (every row).
    :param reason: why (for the log): ``since <time>``, ``never swept``, ``privacy level changed``,
        ``rule version <old> -> <new>``.
    """

    client_id: str
    changes: int
    since: datetime | None
    reason: str

    @property
    def full(self) -> bool:
        """A full pass over every partition."""
        return self.since is None


@dataclass
class SweepResult:
    """Outcome of one sweep.

    :param swept_from: the watermark recorded for the next sweep (None: not advanced, some
        sessions were hidden from the sweep's role).
    :param per_client: rows anonymised per GDPR client.
    :param invalid: invalid IP values removed per client.
    :param full_pass: clients that got a full pass (and why).
    :param partitions: partitions read, in order, with the rows anonymised in each.
    :param seconds: wall time.
    """

    swept_from: datetime | None = None
    per_client: dict[str, int] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)
    full_pass: dict[str, str] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (the task's return value)."""
        return {
            "swept_from": self.swept_from.isoformat() if self.swept_from else None,
            "per_client": self.per_client,
            "full_pass": self.full_pass,
            "partitions": self.partitions,
            "seconds": round(self.seconds, 3),
        }


#: The grant a sweep role needs to see every session's transaction start.
STATS_GRANT = "pg_read_all_stats"


def decide_watermark(oldest_open: datetime | None, hidden_sessions: int, role: str) -> datetime | None:
    """The watermark to record, given what ``gdpr_sweep_watermark.sql`` could see.

    :param oldest_open: ``least(now(), start of the oldest open transaction visible)``.
    :param hidden_sessions: other sessions of the database whose activity the role may not
        see (``xact_start`` NULL although they may be in a transaction: a role without
        ``pg_read_all_stats``). Any of them may be a long load with an older start.
    :param role: the sweep's role (for the warning).
    :return: ``oldest_open``, or None when sessions were hidden: the watermark is not
        advanced for this run (each client keeps its previous one), with a WARNING
        naming the missing grant.
    """
    if hidden_sessions:
        log.warning(
            "gdpr sweep: %d session(s) of other roles are not visible to role %s (their transaction "
            "start is hidden): the watermark is not advanced this run, each client keeps its previous "
            "one. Run GRANT %s TO %s;",
            hidden_sessions,
            role,
            STATS_GRANT,
            role,
        )
        return None
    return oldest_open


def take_watermark(conn: psycopg.Connection) -> datetime | None:
    """Where the next sweep may start reading (``gdpr_sweep_watermark.sql``, :func:`decide_watermark`).

    :param conn: an open connection (the sweep's role).
    :return: the watermark, or None to keep each client's previous one.
    """
    oldest, hidden, role = conn.execute(load_sql("maintenance/gdpr_sweep_watermark.sql")).fetchone()  # type: ignore[misc]
    return decide_watermark(oldest, int(hidden), str(role))


def plan_clients(conn: psycopg.Connection, rule_version: int = RULE_VERSION) -> list[ClientPlan]:
    """Decide, per GDPR client, between a full pass and reading rows created since its last sweep.

    A full pass when the client was never swept (or not since migration 0120), when its
    ``privacy_level`` changed since its last completed sweep started (rows stored or
    attributed while it was ``standard`` may be of any age), or when that sweep ran under
    an older treatment rule.

    :param conn: an open connection.
    :param rule_version: the current rule (:data:`RULE_VERSION`).
    """
    plans = []
    for client_id, changes, covered, version, swept_from in conn.execute(
        load_sql("maintenance/gdpr_sweep_clients.sql")
    ):
        if swept_from is None or covered is None or version is None:
            plan = ClientPlan(client_id, changes, None, "never swept")
        elif covered < changes:
            plan = ClientPlan(client_id, changes, None, "privacy level changed")
        elif version < rule_version:
            plan = ClientPlan(client_id, changes, None, f"rule version {version} -> {rule_version}")
        else:
            plan = ClientPlan(client_id, changes, swept_from, f"since {swept_from.isoformat()}")
        plans.append(plan)
    return plans


def partitions_to_read(
    partitions: dict[date, str], plans: list[ClientPlan]
) -> list[tuple[str, list[ClientPlan]]]:
    """The partitions the sweep reads, oldest first, each with the clients it is read for.

    A daily partition is read for the clients of a full pass and for those whose ``since``
    lies before the day's end; the DEFAULT partition (normally empty; it holds rows of
    any day without a partition) for every client.

    :param partitions: ``{day: partition}`` (:func:`common.partitions.existing_partitions`).
    :param plans: the clients' plans (:func:`plan_clients`).
    """
    out: list[tuple[str, list[ClientPlan]]] = []
    for day, name in sorted(partitions.items()):
        end = day_bounds(day)[1]
        wanted = [p for p in plans if p.since is None or p.since < end]
        if wanted:
            out.append((name, wanted))
    if plans:
        out.append((DEFAULT_PARTITION, list(plans)))
    return out


def sweep_gdpr(
    conn: psycopg.Connection,
    secret: str,
    *,
    batch_rows: int = 5000,
    run_id: str | None = None,
    rule_version: int = RULE_VERSION,
) -> SweepResult:
    """Anonymise every row of a GDPR client that may still hold a raw IP, partition by partition.

    Reads only rows created since each client's last completed sweep, except for the
    clients :func:`plan_clients` gives a full pass; records the new watermark per client
    at the end (a sweep that fails part-way records nothing, the next one reads again).

    :param conn: an open connection (switched to autocommit; each batch is one transaction).
    :param secret: the pseudonym key (Variable ``events_ip_hash_secret``).
    :param batch_rows: rows per transaction.
    :param run_id: the Airflow run id, for ``maintenance_log``.
    :param rule_version: the treatment rule (:data:`RULE_VERSION`; tests pass others).
    :return: the rows anonymised per client and the partitions read.
    """
    conn.autocommit = True
    t0 = time.monotonic()
    started = datetime.now(UTC)
    result = SweepResult()
    # First the watermark, then the clients: a switch after this point is seen next time.
    result.swept_from = take_watermark(conn)
    plans = plan_clients(conn, rule_version)
    result.per_client = {p.client_id: 0 for p in plans}
    result.invalid = {p.client_id: 0 for p in plans}
    result.full_pass = {p.client_id: p.reason for p in plans if p.full}
    visits: Counter[str] = Counter()
    for p in plans:
        what = f"full pass ({p.reason})" if p.full else f"rows created {p.reason}"
        log.info("gdpr sweep: client %s: %s", p.client_id, what)
    for name, wanted in partitions_to_read(existing_partitions(conn), plans):
        treated = _sweep_partition(conn, name, wanted, secret, batch_rows, result)
        result.partitions[name] = treated
        for p in wanted:
            visits[p.client_id] += 1
    result.seconds = time.monotonic() - t0
    _save_state(conn, plans, result.swept_from, rule_version)
    for p in plans:
        n, bad = result.per_client[p.client_id], result.invalid[p.client_id]
        log.info(
            "gdpr sweep: client %s: %d row(s) anonymised (%d invalid IP value(s) removed) over %d "
            "partition(s), %s",
            p.client_id,
            n,
            bad,
            visits[p.client_id],
            "full pass" if p.full else "rows created " + p.reason,
        )
        if n:
            with conn.transaction():
                batches.record(
                    conn,
                    "gdpr_sweep",
                    started_at=started,
                    rows=n,
                    client_id=p.client_id,
                    details={
                        "invalid_ips_removed": bad,
                        "full_pass": p.full,
                        "partitions": visits[p.client_id],
                        "seconds": round(result.seconds, 3),
                    },
                    run_id=run_id,
                )
    log.info(
        "gdpr sweep: %d GDPR client(s) (%d full pass(es)), %d row(s) anonymised, %d partition(s) read "
        "in %.2fs; next sweep reads rows created from %s",
        len(plans),
        len(result.full_pass),
        sum(result.per_client.values()),
        len(result.partitions),
        result.seconds,
        result.swept_from.isoformat() if result.swept_from else "each client's previous watermark",
    )
    return result


def _sweep_partition(
    conn: psycopg.Connection,
    name: str,
    wanted: list[ClientPlan],
    secret: str,
    batch_rows: int,
    result: SweepResult,
) -> int:
    """Treat the candidate rows of one partition for ``wanted`` clients, batch by batch.

    :param conn: an autocommit connection.
    :param name: the partition's table name.
    :param wanted: the clients it is read for, with their ``since``.
    :param secret: the pseudonym key.
    :param batch_rows: rows per transaction.
    :param result: per-client counts are added to it.
    :return: rows anonymised in the partition.
    """
    from psycopg import sql

    query = load_sql("maintenance/gdpr_sweep_candidates.sql").replace(
        "{partition}", sql.Identifier(name).as_string(conn)
    )
    params: dict[str, Any] = {
        "client_ids": [p.client_id for p in wanted],
        "since": [EVERY_ROW_SINCE if p.since is None else p.since.isoformat() for p in wanted],
        "batch": batch_rows,
    }
    t0 = time.monotonic()
    after_id, treated = 0, 0
    while True:
        with conn.transaction():
            rows = conn.execute(query, {**params, "after_id": after_id}).fetchall()
            if not rows:
                break
            protector = IpProtector(secret)
            out = [treat_row(r, protector) for r in rows]
            n = write_treated(conn, (r[:5] for r in out))
        for r in out:
            result.per_client[r[2]] = result.per_client.get(r[2], 0) + 1
            if r[5]:
                result.invalid[r[2]] = result.invalid.get(r[2], 0) + 1
        treated += n
        after_id = rows[-1][0]
    log.info(
        "gdpr sweep: partition %s: %d client(s) (%d full pass), %d row(s) anonymised in %.2fs",
        name,
        len(wanted),
        sum(1 for p in wanted if p.full),
        treated,
        time.monotonic() - t0,
    )
    return treated


def _save_state(
    conn: psycopg.Connection, plans: list[ClientPlan], swept_from: datetime | None, rule_version: int
) -> None:
    """Record, per client, what this completed sweep covered (``gdpr_sweep_save_state.sql``).

    :param conn: an autocommit connection.
    :param plans: the clients swept.
    :param swept_from: the watermark taken when the sweep started; None keeps each client's
        previous one (:func:`decide_watermark`).
    :param rule_version: the treatment rule applied.
    """
    if not plans:
        return
    with conn.transaction():
        conn.execute(
            load_sql("maintenance/gdpr_sweep_save_state.sql"),
            {
                "client_ids": [p.client_id for p in plans],
                "changes": [p.changes for p in plans],
                "is_full": [p.full for p in plans],
                "rule_version": rule_version,
                "swept_from": swept_from,
            },
        )


def run_gdpr_sweep(
    conn: psycopg.Connection, secret: str, *, batch_rows: int = 5000, run_id: str | None = None
) -> dict[str, int]:
    """Anonymise every row of every GDPR client that may still hold a raw IP (:func:`sweep_gdpr`).

    :param conn: an open connection (switched to autocommit; each batch is one transaction).
    :param secret: the pseudonym key (Variable ``events_ip_hash_secret``).
    :param batch_rows: rows per transaction.
    :param run_id: the Airflow run id, for ``maintenance_log``.
    :return: rows treated per client.
    """
    return sweep_gdpr(conn, secret, batch_rows=batch_rows, run_id=run_id).per_client


def run(run_id: str | None = None) -> dict[str, Any]:
    """Task entry point: the sweep with the secret and batch size from Airflow Variables.

    :param run_id: the Airflow run id, for ``maintenance_log``.
    :return: :meth:`SweepResult.as_dict`.
    """
    secret = check_secret(str(get_setting(VAR_IP_HASH_SECRET)))
    with connect() as conn:
        return sweep_gdpr(
            conn, secret, batch_rows=int(get_setting(SET_ROW_BATCH.name)), run_id=run_id
        ).as_dict()
