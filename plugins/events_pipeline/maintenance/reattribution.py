"""Re-attribution: unattributed pending events whose ``site_id`` now matches ``client_domains``.

The domain rule (contract §3 (docs/contract.md): exact domain, else nearest listed parent; lower-case,
port and trailing dot ignored) is applied set-based in SQL
(``include/sql/maintenance/match_domains.sql``) to the distinct unattributed
sites, then rows are updated in bounded batches through the partial index
``events_log_unattributed_idx``. Each batch of rows of a standard client checks the
client's level again and locks the client row (``FOR SHARE``) until it commits, so a
client switched to gdpr during the step never gets old rows stored raw after the
sweep's full pass. Rows of a GDPR client get the GDPR treatment in
the same transaction as their client (every IP of the event, nested ones too, as
an edit of the stored text: contract §6.3), so no export can ever see such a row
with a raw IP. ``export_hour`` stays NULL: the next hourly export claims them.
Archived rows are left alone (they are no longer exported).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from events_pipeline.common import heap_ranges
from events_pipeline.common.db import connect, load_sql
from events_pipeline.common.settings import VAR_IP_HASH_SECRET, get_setting
from events_pipeline.privacy.ip_treatment import check_secret
from events_pipeline.privacy.sweep import SET_ROW_BATCH, treat_and_write

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


def match_sites(conn: psycopg.Connection, sites: list[str]) -> dict[str, tuple[str, str]]:
    """Apply the domain rule to ``sites``.

    :param conn: an open connection.
    :param sites: raw ``site_id`` values.
    :return: ``{site_id: (client_id, privacy_level)}`` for the sites that match.
    """
    if not sites:
        return {}
    rows = conn.execute(load_sql("maintenance/match_domains.sql"), {"sites": sites}).fetchall()
    return {site: (client, privacy) for site, client, privacy in rows}


def delete_erased(conn: psycopg.Connection, matched: dict[str, tuple[str, str]]) -> dict[str, int]:
    """Delete the unattributed rows the matched clients had erased, instead of attributing them.

    Rows of a visitor with a tombstone for the client the row's site now maps to
    (``gdpr_erasure_tombstones``), that existed or happened by the erasure, are the
    erased visitor's data: they are deleted (and recorded in the request's audit trail)
    in one transaction, before any row is attributed (contract §6.5).

    :param conn: an autocommit connection.
    :param matched: ``{site_id: (client_id, privacy_level)}`` from :func:`match_sites`.
    :return: rows deleted per client.
    """
    if not matched:
        return {}
    with conn.transaction():
        rows = conn.execute(
            load_sql("maintenance/reattribute_erased.sql"),
            {"sites": list(matched), "clients": [c for c, _ in matched.values()]},
        ).fetchall()
    erased = {client_id: int(n) for client_id, n in rows}
    for client_id, n in sorted(erased.items()):
        log.info(
            "re-attribution: client %s: %d row(s) of erased visitors deleted instead of attributed",
            client_id,
            n,
        )
    return erased


def attribute_standard(conn: psycopg.Connection, standard: dict[str, str], batch_rows: int) -> Counter[str]:
    """Give the unattributed pending rows of ``standard`` sites their client, batch by batch.

    ``standard`` is what :func:`match_sites` saw when the step started; each batch checks
    the level again (``reattribute_standard_batch.sql``: only clients still ``standard``,
    their row locked ``FOR SHARE`` until the batch commits), so the rows of a client
    switched to gdpr since are left unattributed (for the gdpr path or the next run),
    never stored with a raw IP and ``privacy_level='standard'``.

    :param conn: an autocommit connection (each batch is one transaction).
    :param standard: ``{site_id: client_id}`` of clients that were standard.
    :param batch_rows: rows per transaction.
    :return: rows attributed per client.
    """
    per_client: Counter[str] = Counter()
    params = {"sites": list(standard), "clients": list(standard.values()), "batch": batch_rows}
    query = load_sql("maintenance/reattribute_standard_batch.sql")
    while True:
        changed = conn.execute(query, params).fetchall()
        if not changed:
            break
        per_client.update(r[0] for r in changed)
    return per_client


def now_gdpr(conn: psycopg.Connection, standard: dict[str, str]) -> dict[str, str]:
    """The sites of ``standard`` that now map to the same client, switched to gdpr since.

    :param conn: an open connection.
    :param standard: ``{site_id: client_id}`` as matched when the step started.
    :return: ``{site_id: client_id}`` for the sites whose client is gdpr now.
    """
    return {
        site: client_id
        for site, (client_id, level) in match_sites(conn, list(standard)).items()
        if level == "gdpr" and standard.get(site) == client_id
    }


def run_reattribution(
    conn: psycopg.Connection, secret: str, *, batch_rows: int = 5000, run_id: str | None = None
) -> dict[str, int]:
    """Give unattributed pending events the client their site now maps to.

    :param conn: an open connection (switched to autocommit; each batch is one transaction).
    :param secret: the pseudonym key, for rows of GDPR clients.
    :param batch_rows: rows per transaction.
    :param run_id: the Airflow run id, for ``maintenance_log``.
    :return: rows re-attributed per client.
    """
    conn.autocommit = True
    started = datetime.now(UTC)
    t0 = time.monotonic()
    sites = [r[0] for r in conn.execute(load_sql("maintenance/unattributed_sites.sql"))]
    matched = match_sites(conn, sites)
    erased = delete_erased(conn, matched)
    per_client: Counter[str] = Counter()
    standard = {s: c for s, (c, p) in matched.items() if p != "gdpr"}
    gdpr = {s: c for s, (c, p) in matched.items() if p == "gdpr"}
    if standard:
        per_client.update(attribute_standard(conn, standard, batch_rows))
        # A client switched to gdpr since match_sites: the batches left its rows alone;
        # they take the gdpr path below (a switch after this point: the next run).
        switched = now_gdpr(conn, standard)
        for site, client_id in sorted(switched.items()):
            log.warning(
                "re-attribution: client %s switched to gdpr during the step: rows of site %r get the "
                "gdpr treatment",
                client_id,
                site,
            )
        gdpr.update(switched)
    if gdpr:
        params = {"sites": list(gdpr), "clients": list(gdpr.values()), "batch": batch_rows}
        query = load_sql("maintenance/reattribute_gdpr_candidates.sql")
        while True:
            with conn.transaction():
                rows = conn.execute(query, params).fetchall()
                if rows:
                    treat_and_write(conn, rows, secret)
            if not rows:
                break
            per_client.update(r[2] for r in rows)
    seconds = time.monotonic() - t0
    with conn.transaction():
        for client_id, n in sorted(per_client.items()):
            heap_ranges.record(
                conn, "reattribution", started_at=started, rows=n, client_id=client_id, run_id=run_id
            )
    for client_id, n in sorted(per_client.items()):
        log.info("re-attribution: client %s: %d row(s) attributed", client_id, n)
    log.info(
        "re-attribution: %d unattributed site(s), %d now matched, %d row(s) attributed, %d row(s) of erased "
        "visitors deleted in %.2fs",
        len(sites),
        len(matched),
        sum(per_client.values()),
        sum(erased.values()),
        seconds,
    )
    return dict(per_client)


def run(run_id: str | None = None) -> dict[str, Any]:
    """Task entry point: re-attribution with settings from Airflow Variables.

    :param run_id: the Airflow run id, for ``maintenance_log``.
    """
    secret = check_secret(str(get_setting(VAR_IP_HASH_SECRET)))
    with connect() as conn:
        return run_reattribution(conn, secret, batch_rows=int(get_setting(SET_ROW_BATCH.name)), run_id=run_id)
