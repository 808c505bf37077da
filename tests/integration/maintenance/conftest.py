"""Helpers for the maintenance / GDPR / billing integration tests.

Rows are written straight into the tables ingest and export own (events_log,
ingest_counts, landing_files, export_runs, backup objects): these tests do not
depend on the ingest or export code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql

COLUMNS = (
    "event_id",
    "event_type",
    "visitor_id",
    "site_id",
    "timestamp",
    "ip_address",
    "raw_event_data",
    "created_at",
    "processed_at",
    "client_id",
    "export_status",
    "privacy_level",
    "export_hour",
    "file_id",
)


def day_start(d: date) -> datetime:
    """UTC midnight of ``d``."""
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def event(
    created_at: datetime,
    *,
    client_id: str | None = "acme",
    status: str = "pending",
    processed_at: datetime | None = None,
    visitor_id: str = "v1",
    site_id: str = "www.acme.com",
    ip: str | None = "203.0.113.77",
    privacy_level: str = "standard",
    export_hour: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One events_log row as a dict (defaults: a pending acme pageview)."""
    import uuid

    raw = {"event_type": "pageview", "site_id": site_id, "visitor_id": visitor_id, **(extra or {})}
    if ip is not None:
        raw["ip_address"] = ip
    if status == "exported":
        processed_at = processed_at or created_at + timedelta(hours=1)
        export_hour = export_hour or created_at.replace(minute=0, second=0, microsecond=0)
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "pageview",
        "visitor_id": visitor_id,
        "site_id": site_id,
        "timestamp": created_at,
        "ip_address": ip,
        "raw_event_data": json.dumps(raw),
        "created_at": created_at,
        "processed_at": processed_at,
        "client_id": client_id,
        "export_status": status,
        "privacy_level": privacy_level,
        "export_hour": export_hour,
    }


def insert_events(db: Any, rows: Iterable[dict[str, Any]]) -> int:
    """COPY ``rows`` into events_log; return how many."""
    n = 0
    with db.cursor() as cur, cur.copy(f"COPY events_log ({', '.join(COLUMNS)}) FROM STDIN") as cp:
        for r in rows:
            cp.write_row([r.get(c) for c in COLUMNS])  # file_id is optional
            n += 1
    return n


def add_client(
    db: Any,
    client_id: str,
    *,
    retention_days: int = 7,
    privacy_level: str = "standard",
    domains: Iterable[str] = (),
    bucket: str = "client-bucket",
    prefix: str | None = None,
) -> None:
    """Insert a client and its domains."""
    db.execute(
        "INSERT INTO clients (client_id, name, privacy_level, export_bucket, export_prefix, retention_days) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (
            client_id,
            client_id.title(),
            privacy_level,
            bucket,
            prefix or f"exports/{client_id}",
            retention_days,
        ),
    )
    for d in domains:
        db.execute("INSERT INTO client_domains (domain, client_id) VALUES (%s, %s)", (d, client_id))


def mark_billed(db: Any, first: date, last: date) -> None:
    """Pretend billing ran for every day from ``first`` to ``last``."""
    db.execute(
        "INSERT INTO billing_runs (day) SELECT generate_series(%s::date, %s::date, '1 day')::date "
        "ON CONFLICT DO NOTHING",
        (first, last),
    )


def publish_exported_hours(db: Any) -> int:
    """Record a 'succeeded' export run for every (client, export_hour) of the exported rows.

    What the export writes when it publishes an hour (finished when its last row was
    marked); retention only deletes rows of published hours. Returns the runs added.
    """
    return db.execute(
        "INSERT INTO export_runs (client_id, interval_start, interval_end, status, row_count, finished_at) "
        "SELECT client_id, export_hour, export_hour + interval '1 hour', 'succeeded', count(*), "
        "max(processed_at) FROM events_log "
        "WHERE export_status = 'exported' AND export_hour IS NOT NULL AND client_id IS NOT NULL "
        "GROUP BY client_id, export_hour ON CONFLICT DO NOTHING"
    ).rowcount


def count(db: Any, where: str = "true", params: tuple[Any, ...] = ()) -> int:
    """Count events_log rows matching a WHERE clause (test-only SQL)."""
    query = sql.SQL("SELECT count(*) FROM events_log WHERE {}").format(sql.SQL(where))
    return db.execute(query, params).fetchone()[0]


@pytest.fixture
def maint_db(db: Any, clean_tables: None) -> Any:
    """The events DB, maintenance tables and erasure tombstones emptied before and after the test."""
    db.execute("TRUNCATE maintenance_log, billing_runs, partition_maintenance, gdpr_erasure_tombstones")
    yield db
    db.execute("TRUNCATE maintenance_log, billing_runs, partition_maintenance, gdpr_erasure_tombstones")


@pytest.fixture
def partitions_back(db: Any) -> Any:
    """Create daily partitions from 40 days ago to 3 days ahead."""
    from events_pipeline.common.partitions import ensure_daily_partitions

    today = datetime.now(UTC).date()
    ensure_daily_partitions(db, today - timedelta(days=40), today + timedelta(days=3))
    db.autocommit = True
    return today
