"""Fixtures of the attribution sync tests: a real, scriptable pixel management service.

:class:`ScriptedService` is a real HTTP server (``http.server``, threaded) on
127.0.0.1: by default it answers like the real service (a listed domain or a
sub-domain of one -> ``200 {"client_id": ...}``, anything else -> ``404``);
per site, replies can be queued (a 500, a 429 with ``Retry-After``, a slow
answer, a malformed body) and are served in order before the default applies.
It records every request (site, headers, time) and the highest number of
requests it served at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from devtools.pixel_management_server import DOMAIN_PATH, owner_of
from tests.integration.export.conftest import CLIENT_BUCKETS, add_client, insert_rows, make_rows

TOKEN = "sync-test-token"
API_KEY = "sync-test-api-key"
#: Tables of the attribution sync (not emptied by the shared clean_tables fixture).
SYNC_TABLES = "attribution_sync_runs, attribution_sync_problems, attribution_negative_cache"


@dataclass
class Reply:
    """One scripted reply.

    :param status: HTTP status.
    :param body: a dict (sent as JSON), str or bytes.
    :param headers: extra response headers.
    :param delay: seconds to wait before answering (a slow service).
    """

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    """One request the service received."""

    site: str
    headers: dict[str, str]
    at: float


class ScriptedService:
    """A real HTTP pixel management service whose answers tests control.

    :param domains: domain -> client id answered by default (parent rule applies).
    """

    def __init__(self, domains: dict[str, str] | None = None) -> None:
        self.domains: dict[str, str] = dict(domains or {})
        self.scripts: dict[str, list[Reply]] = {}
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server.server_address[1])

    def script(self, site: str, *replies: Reply) -> None:
        """Queue replies for ``site`` (served in order, then the default answer)."""
        self.scripts.setdefault(site, []).extend(replies)

    def asked(self, site: str) -> int:
        """How many requests asked about ``site``."""
        return sum(1 for r in self.requests if r.site == site)

    def times(self, site: str) -> list[float]:
        """Monotonic arrival times of the requests about ``site``."""
        return [r.at for r in self.requests if r.site == site]

    def next_reply(self, site: str) -> Reply:
        """The scripted reply for ``site``, else the default answer."""
        with self.lock:
            queue = self.scripts.get(site)
            if queue:
                return queue.pop(0)
        client = owner_of(site, self.domains)
        if client is None:
            return Reply(404, {"error": "unknown domain", "domain": site})
        return Reply(200, {"client_id": client, "domain": site})

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def _handler_for(service: ScriptedService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            site = unquote(path[len(DOMAIN_PATH) :]) if path.startswith(DOMAIN_PATH) else path
            with service.lock:
                service.requests.append(Request(site, dict(self.headers.items()), time.monotonic()))
                service.in_flight += 1
                service.max_in_flight = max(service.max_in_flight, service.in_flight)
            try:
                reply = service.next_reply(site)
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body
                if isinstance(body, dict):
                    body = json.dumps(body)
                if isinstance(body, str):
                    body = body.encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass
            finally:
                with service.lock:
                    service.in_flight -= 1

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    return Handler


def connection_json(port: int, *, token: str | None = TOKEN) -> str:
    """``AIRFLOW_CONN_PIXEL_MANAGEMENT`` for the service on ``port`` (token + an extra header)."""
    conn: dict[str, Any] = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": port,
        "schema": "http",
        "extra": {"headers": {"X-Api-Key": API_KEY}},
    }
    if token:
        conn["password"] = token
    return json.dumps(conn)


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedService]:
    """The scripted service, reached through ``pixel_management``, with fast retry settings."""
    svc = ScriptedService({"acme.com": "acme", "globex.de": "globex"})
    monkeypatch.setenv("AIRFLOW_CONN_PIXEL_MANAGEMENT", connection_json(svc.port))
    for name, value in {
        "EVENTS_ATTRIBUTION_BACKOFF_SECONDS": "0.05",
        "EVENTS_ATTRIBUTION_TIMEOUT_SECONDS": "1.0",
        "EVENTS_ATTRIBUTION_MAX_RETRIES": "3",
        "EVENTS_ATTRIBUTION_CONCURRENCY": "4",
    }.items():
        monkeypatch.setenv(f"AIRFLOW_VAR_{name}", value)
    yield svc
    svc.stop()


@pytest.fixture
def sync_env(services: None, clean_tables: None, s3: Any, db: Any) -> Iterator[Any]:
    """Empty pipeline and sync tables, two clients with their buckets (acme standard, globex GDPR).

    Yields the autocommit connection.
    """
    db.execute(f"TRUNCATE {SYNC_TABLES}, maintenance_log RESTART IDENTITY")
    for bucket in CLIENT_BUCKETS:
        s3.create_bucket(Bucket=bucket)
    add_client(db, "acme", "client-acme", "exports/acme")
    add_client(db, "globex", "client-globex", "globex", privacy_level="gdpr")
    yield db
    db.execute(f"TRUNCATE {SYNC_TABLES}, maintenance_log RESTART IDENTITY")


def add_events(
    db: Any,
    site: str,
    created: list[datetime],
    *,
    client_id: str | None = None,
    seed: int = 1,
) -> list[str]:
    """Insert one event per ``created`` instant for ``site``; return their event ids.

    :param db: connection.
    :param site: the stored (normalised) ``site_id``.
    :param created: ``created_at`` of each row.
    :param client_id: the client given at load time (None: unattributed).
    :param seed: random seed of the event bodies.
    """
    rows = make_rows(client_id, created, seed=seed, batch_id=f"batch-{site}-{seed}")
    for row in rows:
        row["site_id"] = site
    insert_rows(db, rows)
    return [r["event_id"] for r in rows]


def mapping(db: Any) -> dict[str, tuple[str, str]]:
    """``client_domains`` as ``domain -> (client_id, source)``."""
    return {r[0]: (r[1], r[2]) for r in db.execute("SELECT domain, client_id, source FROM client_domains")}


def clients_of(db: Any, site: str) -> dict[str | None, int]:
    """Rows of ``site`` per client."""
    return dict(
        db.execute(
            "SELECT client_id, count(*) FROM events_log WHERE site_id = %s GROUP BY 1", (site,)
        ).fetchall()
    )


def last_run(db: Any) -> dict[str, Any]:
    """The newest ``attribution_sync_runs`` row as a dict."""
    cur = db.execute("SELECT * FROM attribution_sync_runs ORDER BY sync_run_id DESC LIMIT 1")
    names = [d[0] for d in cur.description]
    row = cur.fetchone()
    assert row is not None, "no sync run recorded"
    return dict(zip(names, row, strict=True))


def problems(db: Any) -> list[dict[str, Any]]:
    """Open ``attribution_sync_problems`` rows as dicts, oldest first."""
    cur = db.execute(
        "SELECT * FROM attribution_sync_problems WHERE acknowledged_at IS NULL ORDER BY problem_id"
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def now_utc() -> datetime:
    """The current time (UTC)."""
    return datetime.now(UTC)
