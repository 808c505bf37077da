"""Client of the pixel management service: which client owns a site.

``GET <base>/api/v1/config/domain/<site>`` answers ``200`` with a JSON object
holding the owning ``client_id`` (``{"client_id": "acme"}``; other members are
ignored), or ``404`` when the service does not know the site. The service
applies its own parent-domain rules, so the exact normalised site is asked and
the answer is about that site only (docs/attribution.md).

Requests run on a bounded thread pool over one shared ``httpx.Client`` (safe to
share between threads), each with a timeout. 5xx answers, 408, timeouts and
connection errors are retried with exponential backoff and jitter; a 429 waits
for its ``Retry-After`` (seconds or an HTTP date) and holds back every worker
until then, so the whole run honours the service's rate limit. 401/403 stop the
run: the credentials of the connection are wrong for every site alike.

This module knows nothing about the database; :mod:`events_pipeline.attribution.sync`
records the answers.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from events_pipeline.common.errors import SettingError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: Airflow connection of the service (HTTP: host, port, schema; password = Bearer token).
PIXEL_CONN_ID = "pixel_management"
#: Path of the domain lookup, relative to the connection's base URL.
DOMAIN_PATH = "/api/v1/config/domain/"
#: A client id as ``clients.client_id`` allows it (contract §3).
CLIENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: Longest answer body kept for a problem record or a log line.
EXCERPT_CHARS = 200

FOUND = "found"
NOT_FOUND = "not_found"
MALFORMED = "malformed"
ERROR = "error"
DEFERRED = "deferred"


class ServiceRefusedError(SettingError):
    """The service refused the credentials (401/403): no site can be resolved this run.

    A setting error (the connection's token or headers): the task fails at once,
    naming the connection, instead of retrying with the same credentials.
    """


@dataclass(frozen=True)
class ServiceConfig:
    """Where and how to reach the service.

    :param conn_id: the Airflow connection it was read from (for messages).
    :param base_url: ``scheme://host[:port][/path]`` without a trailing slash.
    :param headers: headers sent with every request (may hold a token: never logged).
    """

    conn_id: str
    base_url: str
    headers: Mapping[str, str] = field(repr=False)

    def url_for(self, site: str) -> str:
        """Return the lookup URL of ``site`` (percent-encoded as one path segment).

        :param site: a normalised site.
        """
        return f"{self.base_url}{DOMAIN_PATH}{quote(site, safe='')}"


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for one answer and how often to ask again.

    :param timeout_s: timeout of one request (connect, read, write, pool), seconds.
    :param max_retries: retries after the first attempt (5xx, 408, 429, timeouts, connection errors).
    :param backoff_s: first backoff delay in seconds; doubles per retry, with jitter (50-100 %).
    :param max_backoff_s: cap of one backoff delay, seconds.
    :param max_retry_after_s: longest ``Retry-After`` honoured; a longer one ends the site's
        attempts for this run (it is asked again next run).
    """

    timeout_s: float = 5.0
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0

    def backoff(self, retry: int) -> float:
        """Return the delay before retry number ``retry`` (1-based), jittered.

        :param retry: 1 for the first retry, 2 for the second...
        """
        base = min(self.max_backoff_s, self.backoff_s * (2 ** (retry - 1)))
        return base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


@dataclass(frozen=True)
class Answer:
    """What the service said about one site.

    :param site: the site asked.
    :param kind: ``found``, ``not_found``, ``malformed``, ``error`` (no usable answer
        after the retries) or ``deferred`` (not asked: the run's time budget was used up).
    :param client_id: the answered client for ``found``, else the readable ``client_id``
        of a malformed body, if any.
    :param detail: a short reason (HTTP status, error, body excerpt) for logs and records.
    :param attempts: requests made.
    """

    site: str
    kind: str
    client_id: str | None = None
    detail: str = ""
    attempts: int = 0


def excerpt(text: str | bytes, limit: int = EXCERPT_CHARS) -> str:
    """Return ``text`` on one line, cut to ``limit`` characters.

    :param text: a body or message.
    :param limit: maximum length.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def parse_body(site: str, body: bytes) -> Answer:
    """Read a ``200`` answer: a JSON object with a valid string ``client_id``.

    :param site: the site asked.
    :param body: the response body.
    :return: a ``found`` answer, or ``malformed`` naming what is wrong.
    """
    import json

    try:
        doc = json.loads(body)
    except ValueError:
        return Answer(site, MALFORMED, None, f"body is not JSON: {excerpt(body)!r}")
    if not isinstance(doc, dict):
        return Answer(site, MALFORMED, None, f"body is not a JSON object: {excerpt(body)!r}")
    client_id = doc.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        return Answer(site, MALFORMED, None, f"body has no string client_id: {excerpt(body)!r}")
    if not CLIENT_ID_RE.match(client_id):
        return Answer(
            site,
            MALFORMED,
            excerpt(client_id, 100),
            f"client_id {excerpt(client_id, 100)!r} is not a valid client id ({CLIENT_ID_RE.pattern})",
        )
    return Answer(site, FOUND, client_id, "")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delay seconds or an HTTP date.

    :param value: the header value (``None`` when absent).
    :param now: the current time, for the date form (default: now).
    :return: seconds to wait (never negative), or ``None`` when absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def config_from_connection(conn: Any, conn_id: str = PIXEL_CONN_ID) -> ServiceConfig:
    """Build the service configuration from an Airflow HTTP connection.

    ``host`` (``service.internal`` or a full ``https://service.internal``),
    ``port``, ``schema`` (``http`` or ``https``, default ``http``; the HTTP
    provider's convention), ``password`` (sent as ``Authorization: Bearer``),
    extra ``{"headers": {...}}`` (sent with every request, e.g. ``X-Api-Key``).

    :param conn: the Airflow ``Connection``.
    :param conn_id: its id, for messages.
    :raises SettingError: no host, a schema other than http/https, or headers that are
        not an object of strings (naming the connection).
    """
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise SettingError(f"Airflow connection {conn_id!r} has no host: set the service's host name")
    if "://" in host:
        parts = urlsplit(host)
        scheme, netloc, path = parts.scheme.lower(), parts.netloc, parts.path
    else:
        scheme = (conn.schema or "http").strip().lower()
        netloc, _, path = host.partition("/")
        path = f"/{path}" if path else ""
    if scheme not in ("http", "https") or not netloc:
        raise SettingError(
            f"Airflow connection {conn_id!r}: host {conn.host!r} / schema {conn.schema!r} do not make an "
            "http(s) URL: put the host name in host and 'http' or 'https' in schema"
        )
    try:
        has_port = urlsplit(f"//{netloc}").port is not None
    except ValueError as exc:
        raise SettingError(f"Airflow connection {conn_id!r}: host {conn.host!r} has a bad port") from exc
    if conn.port and not has_port:
        netloc = f"{netloc}:{int(conn.port)}"
    base = f"{scheme}://{netloc}{path}"
    extra = conn.extra_dejson or {}
    raw_headers = extra.get("headers", {})
    if not isinstance(raw_headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw_headers.items()
    ):
        raise SettingError(
            f"Airflow connection {conn_id!r}: extra 'headers' must be an object of strings, "
            'e.g. {"headers": {"X-Api-Key": "..."}}'
        )
    headers = {"Accept": "application/json", **raw_headers}
    if conn.password:
        headers["Authorization"] = f"Bearer {conn.password}"
    return ServiceConfig(conn_id=conn_id, base_url=base.rstrip("/"), headers=headers)


def load_config(conn_id: str = PIXEL_CONN_ID) -> ServiceConfig | None:
    """Read the service's connection; ``None`` when it is not defined (the sync is off).

    :param conn_id: the Airflow connection id.
    :raises SettingError: the connection exists but is unusable (naming what is wrong).
    """
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    return config_from_connection(conn, conn_id)


class _Gate:
    """The earliest time any worker may send its next request (set by a 429)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0

    def hold_until(self, monotonic_time: float) -> None:
        """Let no request start before ``monotonic_time``.

        :param monotonic_time: a ``time.monotonic()`` value.
        """
        with self._lock:
            self._not_before = max(self._not_before, monotonic_time)

    def not_before(self) -> float:
        """The earliest ``time.monotonic()`` at which a request may start."""
        with self._lock:
            return self._not_before


@dataclass
class _Run:
    """What the workers of one :func:`resolve_sites` call share.

    :param client: the ``httpx.Client``.
    :param config: the service configuration.
    :param policy: timeout and retries.
    :param deadline: ``time.monotonic()`` after which no request starts.
    :param gate: the 429 hold shared by every worker.
    :param stop: set when the run must end (credentials refused, caller gone).
    :param refused: the 401/403 answers seen.
    """

    client: Any
    config: ServiceConfig
    policy: RetryPolicy
    deadline: float
    gate: _Gate = field(default_factory=_Gate)
    stop: threading.Event = field(default_factory=threading.Event)
    refused: list[str] = field(default_factory=list)


def _wait(run: _Run, seconds: float) -> bool:
    """Wait ``seconds`` (and past the 429 gate); ``False`` when that would cross the deadline.

    The wait ends early when the run is stopped (``False`` then too).

    :param run: the shared state.
    :param seconds: the delay wanted.
    """
    until = max(time.monotonic() + seconds, run.gate.not_before())
    if until > run.deadline or run.stop.is_set():
        return False
    delay = until - time.monotonic()
    stopped = delay > 0 and run.stop.wait(delay)
    return not stopped


def resolve_one(run: _Run, site: str) -> Answer:
    """Ask the service about ``site``, retrying what is worth retrying.

    :param run: the shared state of this resolution run.
    :param site: a normalised site.
    """
    import httpx

    url = run.config.url_for(site)
    attempts = 0
    last = ""
    while True:
        if run.stop.is_set() or not _wait(run, 0.0):
            return Answer(site, DEFERRED, None, last or "run budget used up before asking", attempts)
        attempts += 1
        retry_after: float | None = None
        try:
            response = run.client.get(url)
        except httpx.TimeoutException as exc:
            last = f"timeout after {run.policy.timeout_s:g} s ({type(exc).__name__})"
        except httpx.TransportError as exc:
            last = f"connection error: {type(exc).__name__}: {excerpt(str(exc), 120)}"
        else:
            status = response.status_code
            if status == 200:
                return _with_attempts(parse_body(site, response.content), attempts)
            if status == 404:
                return Answer(site, NOT_FOUND, None, "HTTP 404", attempts)
            if status in (401, 403):
                run.refused.append(f"HTTP {status} for {site}: {excerpt(response.content, 120)!r}")
                run.stop.set()
                return Answer(site, ERROR, None, f"HTTP {status}: credentials refused", attempts)
            last = f"HTTP {status}: {excerpt(response.content, 120)!r}"
            if status == 429:
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                if retry_after is not None and retry_after > run.policy.max_retry_after_s:
                    return Answer(
                        site,
                        ERROR,
                        None,
                        f"HTTP 429 with Retry-After {retry_after:g} s "
                        f"(> {run.policy.max_retry_after_s:g} s): asked again next run",
                        attempts,
                    )
            elif status < 500 and status != 408:
                return Answer(site, ERROR, None, last, attempts)
        if attempts > run.policy.max_retries:
            return Answer(site, ERROR, None, f"{last} (after {attempts} attempts)", attempts)
        delay = retry_after if retry_after is not None else run.policy.backoff(attempts)
        if retry_after is not None:
            run.gate.hold_until(time.monotonic() + retry_after)
            log.info("pixel_management: 429 for %s, every request waits %.1f s (Retry-After)", site, delay)
        if not _wait(run, delay):
            return Answer(site, DEFERRED, None, f"{last}; run budget used up before the retry", attempts)


def _with_attempts(answer: Answer, attempts: int) -> Answer:
    """Return ``answer`` with its ``attempts`` set.

    :param answer: an answer.
    :param attempts: requests made for it.
    """
    return Answer(answer.site, answer.kind, answer.client_id, answer.detail, attempts)


def make_client(config: ServiceConfig, policy: RetryPolicy, concurrency: int) -> httpx.Client:
    """Return an ``httpx.Client`` for the service: its headers, the timeout, a bounded pool.

    :param config: the service configuration.
    :param policy: the timeout source.
    :param concurrency: connections kept (one per worker).
    """
    import httpx

    return httpx.Client(
        headers=dict(config.headers),
        timeout=httpx.Timeout(policy.timeout_s),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        follow_redirects=False,
        trust_env=False,
    )


def resolve_sites(
    config: ServiceConfig,
    sites: list[str],
    *,
    policy: RetryPolicy,
    concurrency: int,
    budget_s: float,
    client: Any | None = None,
) -> Iterator[Answer]:
    """Ask the service about each site on ``concurrency`` threads; yield answers as they come.

    Every site yields exactly one answer. Sites not asked before ``budget_s``
    seconds have passed yield ``deferred`` answers.

    :param config: the service configuration.
    :param sites: normalised sites, most important first (workers take them in order).
    :param policy: timeout and retries.
    :param concurrency: worker threads (and connections).
    :param budget_s: seconds after which no new request starts.
    :param client: an ``httpx.Client`` to use (default: one made by :func:`make_client`).
    :raises ServiceRefusedError: the service answered 401/403 (after the other answers were yielded).
    """
    if not sites:
        return
    workers = max(1, min(concurrency, len(sites)))
    own = client is None
    http = make_client(config, policy, workers) if own else client
    run = _Run(http, config, policy, deadline=time.monotonic() + budget_s)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixel-mgmt")
    try:
        pending: set[Future[Answer]] = {pool.submit(resolve_one, run, site) for site in sites}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        # also when the caller stops early: queued sites end as deferred at once
        run.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        if own:
            http.close()
    if run.refused:
        raise ServiceRefusedError(
            f"pixel management service at {config.base_url} (Airflow connection {config.conn_id!r}) refused "
            f"the credentials: {run.refused[0]}; check the token (connection password) or the extra headers"
        )
