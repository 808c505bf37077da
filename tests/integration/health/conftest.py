"""Fixtures of the health tests: seed faults straight into PostgreSQL and S3, run events_health.

Nothing here imports ingest/export code: rows and objects are written the way
those parts of the pipeline leave them (contract §2 (docs/contract.md), §3, §5).
"""

from __future__ import annotations

import email
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

LANDING = "test-landing"


def current_hour() -> datetime:
    """The start of the current UTC hour."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class HealthRun:
    """Result of one ``events_health`` run.

    :param dag_run: the DagRun returned by ``dag.test()``.
    :param states: task id -> final state.
    :param errors: task id -> message of the exception it failed with.
    :param alerts: summaries passed to ``alerting.notify`` (one per failed task).
    """

    dag_run: Any
    states: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)

    def failed(self) -> set[str]:
        """Task ids that failed."""
        return {t for t, s in self.states.items() if s == "failed"}


@pytest.fixture
def health_env(services: None, clean_tables: None, s3: Any) -> Iterator[Any]:
    """Empty pipeline tables and empty landing/backup buckets; yields the boto3 client."""
    yield s3


@pytest.fixture
def run_health(run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Callable[..., HealthRun]:
    """Run ``events_health`` for the hour ``[end - 1h, end)`` and collect messages.

    Exception messages are captured at the source: a wrapper around
    ``dag_defaults.failure_summary`` (the failure callback's first step)
    records ``context["exception"]`` per task; ``alerting.notify`` records the
    summaries it is given and then runs for real.
    """
    from events_pipeline.orchestration import alerting, dag_defaults
    from tests.conftest import task_states

    errors: dict[str, str] = {}
    alerts: list[str] = []
    real_summary = dag_defaults.failure_summary
    real_notify = alerting.notify

    def recording_summary(context: dict[str, Any]) -> str:
        ti = context.get("ti") or context.get("task_instance")
        errors[getattr(ti, "task_id", "?")] = str(context.get("exception"))
        return real_summary(context)

    def recording_notify(summary: str, context: dict) -> None:
        alerts.append(summary)
        real_notify(summary, context)

    monkeypatch.setattr(dag_defaults, "failure_summary", recording_summary)
    monkeypatch.setattr(alerting, "notify", recording_notify)

    def _run(end: datetime | None = None) -> HealthRun:
        errors.clear()
        alerts.clear()
        dag_run = run_dag("events_health", logical_date=end or current_hour())
        return HealthRun(dag_run, task_states(dag_run), dict(errors), list(alerts))

    return _run


# --- seeding helpers -------------------------------------------------------------


def add_client(db: Any, client_id: str, *, created_at: datetime | None = None, active: bool = True) -> None:
    """Insert a client (and its domain ``<client_id>.example``)."""
    db.execute(
        "INSERT INTO clients (client_id, name, export_bucket, export_prefix, active, created_at) "
        "VALUES (%s, %s, 'client-bucket', %s, %s, %s)",
        (client_id, client_id.title(), client_id, active, created_at or datetime.now(UTC)),
    )
    db.execute(
        "INSERT INTO client_domains (domain, client_id) VALUES (%s, %s)", (f"{client_id}.example", client_id)
    )


def add_events(
    db: Any,
    n: int,
    *,
    created_at: datetime,
    client_id: str | None,
    site_id: str | None = None,
    batch_id: str | None = None,
    export_status: str = "pending",
    export_hour: datetime | None = None,
    file_id: int | None = None,
) -> None:
    """Insert ``n`` events sharing ``created_at`` (one load transaction) with one INSERT ... SELECT."""
    db.execute(
        """
        INSERT INTO events_log (event_type, site_id, "timestamp", raw_event_data, created_at,
                                client_id, batch_id, export_status, export_hour, file_id, processed_at)
        SELECT 'pageview', %(site)s, %(created)s, jsonb_build_object('n', g), %(created)s,
               %(client)s, %(batch)s, %(status)s, %(hour)s, %(file)s,
               CASE WHEN %(status)s = 'exported' THEN %(created)s END
        FROM generate_series(1, %(n)s) AS g
        """,
        {
            "site": site_id or (f"{client_id}.example" if client_id else "unknown.example"),
            "created": created_at,
            "client": client_id,
            "batch": batch_id,
            "status": export_status,
            "hour": export_hour,
            "file": file_id,
            "n": n,
        },
    )


def add_landing_file(
    db: Any,
    key: str,
    *,
    loaded_at: datetime,
    rows_loaded: int,
    rows_rejected: int,
    status: str = "processed",
) -> int:
    """Register a landing file the way ingest leaves it; return its file_id."""
    row = db.execute(
        """
        INSERT INTO landing_files (bucket, key, etag, size_bytes, status, batch_id, rows_loaded,
                                   rows_rejected, loaded_at, rejected_key, created_at)
        VALUES (%s, %s, md5(%s), 1000, %s, md5(%s), %s, %s, %s, %s, %s)
        RETURNING file_id
        """,
        (
            LANDING,
            key,
            key,
            status,
            key,
            rows_loaded,
            rows_rejected,
            loaded_at,
            "rejected/" + key.removeprefix("incoming/") + ".rejected.ndjson" if rows_rejected else None,
            loaded_at,
        ),
    ).fetchone()
    return int(row[0])


def add_export_run(
    db: Any, client_id: str, hour: datetime, *, status: str = "succeeded", error: str | None = None
) -> None:
    """Record an export run of ``client_id`` for ``[hour, hour + 1h)``."""
    db.execute(
        "INSERT INTO export_runs (client_id, interval_start, interval_end, status, row_count, error, "
        "finished_at) VALUES (%s, %s, %s, %s, 0, %s, %s)",
        (client_id, hour, hour + timedelta(hours=1), status, error, hour + timedelta(hours=1, minutes=5)),
    )


def put_object(s3: Any, key: str, body: bytes = b'{"event_type":"x"}\n') -> None:
    """Write an object into the landing bucket."""
    s3.put_object(Bucket=LANDING, Key=key, Body=body)


class _Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
        self.messages.append(email.message_from_bytes(envelope.content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Inbox]:
    """A local SMTP server on 127.0.0.1 and the smtp_default connection pointing at it."""
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {
            "disable_ssl": True,
            "disable_tls": True,
            "from_email": "airflow@example.com",
            "retry_limit": 0,
            "timeout": 10,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_ALERT_EMAIL_TO", "oncall@example.com, lead@example.com")
    yield inbox
    controller.stop()
