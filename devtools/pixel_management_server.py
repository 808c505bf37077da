"""A small pixel management service for the local stack (a real HTTP server, threaded).

It answers ``GET /api/v1/config/domain/<site>`` the way the real service is
expected to (docs/attribution.md): ``200 {"client_id": ..., "domain": ...}`` for
a site that is a demo client's domain or a sub-domain of one (its own parent
rule), ``404`` for any other site (``unknown.example.org`` of the demo data).
With a token, requests without ``Authorization: Bearer <token>`` get ``401``.

``scripts/run_local.py`` starts it on a loopback port and points
``AIRFLOW_CONN_PIXEL_MANAGEMENT`` at it; the demo leaves the domains of
:data:`SERVICE_ONLY_DOMAINS` out of ``client_domains``, so their events arrive
unattributed and get their client through ``events_attribution_sync``.
Standalone: ``PYTHONPATH=plugins:. .venv/bin/python -m devtools.pixel_management_server --port 8091``.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from devtools.demo_data import DEMO_CLIENTS

log = logging.getLogger(__name__)

#: Path prefix of the domain lookup.
DOMAIN_PATH = "/api/v1/config/domain/"
#: Every demo domain and its client (what the service knows).
DEMO_DOMAINS: dict[str, str] = {domain: c.client_id for c in DEMO_CLIENTS for domain in c.domains}
#: Demo domains the local stack does not seed into client_domains: the sync maps them.
SERVICE_ONLY_DOMAINS = ("initech.io",)


def owner_of(site: str, domains: Mapping[str, str]) -> str | None:
    """Return the client of ``site``: its own domain, else the nearest listed parent.

    :param site: a lower-case host name.
    :param domains: domain -> client id.
    """
    candidate = site
    while candidate:
        if candidate in domains:
            return domains[candidate]
        _, dot, rest = candidate.partition(".")
        candidate = rest if dot else ""
    return None


class PixelManagementHTTPServer(ThreadingHTTPServer):
    """The HTTP server with what its handlers read: the domains and the token.

    :param address: ``(host, port)`` to bind.
    :param domains: domain -> client id.
    :param token: the Bearer token required, or ``None`` for none.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], domains: Mapping[str, str], token: str | None) -> None:
        super().__init__(address, _Handler)
        self.domains = dict(domains)
        self.token = token


class _Handler(BaseHTTPRequestHandler):
    server: PixelManagementHTTPServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self._send(401, {"error": "missing or wrong bearer token"})
            return
        if not path.startswith(DOMAIN_PATH) or len(path) == len(DOMAIN_PATH):
            self._send(404, {"error": f"no such resource {path}"})
            return
        site = unquote(path[len(DOMAIN_PATH) :]).strip().lower().rstrip(".")
        client = owner_of(site, self.server.domains)
        if client is None:
            self._send(404, {"error": "unknown domain", "domain": site})
        else:
            self._send(200, {"client_id": client, "domain": site})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("pixel management demo: " + fmt, *args)


@dataclass
class PixelManagementServer:
    """A running demo service.

    :param host: the bound address.
    :param port: the bound port.
    :param token: the required Bearer token, if any.
    :param server: the HTTP server.
    :param thread: the thread serving it.
    """

    host: str
    port: int
    token: str | None
    server: PixelManagementHTTPServer = field(repr=False)
    thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def connection_json(self) -> str:
        """The ``AIRFLOW_CONN_PIXEL_MANAGEMENT`` value (JSON) for this server."""
        conn: dict[str, Any] = {"conn_type": "http", "host": self.host, "port": self.port, "schema": "http"}
        if self.token:
            conn["password"] = self.token
        return json.dumps(conn)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    domains: Mapping[str, str] | None = None,
    token: str | None = None,
) -> PixelManagementServer:
    """Start the demo service in a background thread.

    :param port: TCP port; 0 picks a free one.
    :param host: address to bind (loopback by default).
    :param domains: domain -> client id (default: the demo clients' domains).
    :param token: require ``Authorization: Bearer <token>`` when given.
    """
    server = PixelManagementHTTPServer((host, port), DEMO_DOMAINS if domains is None else domains, token)
    thread = threading.Thread(target=server.serve_forever, name="pixel-management-demo", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    log.info("pixel management demo service at http://%s:%s", bound_host, bound_port)
    return PixelManagementServer(str(bound_host), int(bound_port), token, server, thread)


def main() -> None:
    """Serve the demo domains until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--token", default=None, help="require this Bearer token")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG)
    server = PixelManagementHTTPServer((args.host, args.port), DEMO_DOMAINS, args.token)
    print(f"pixel management demo service on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
