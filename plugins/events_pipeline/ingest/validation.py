"""Per-line rules of contract §2 (docs/contract.md): turn one landing line into a valid event or a reason.

The hot path of ingest runs through :func:`validate_event` once per line, so it
avoids allocations it does not need; a rejected line raises
:class:`LineRejectedError` whose message is meant for a person reading the
``rejected/`` file ("timestamp '2026-13-01' is not ISO-8601 ...").

NUL characters (U+0000), which PostgreSQL cannot store in ``text`` or
``jsonb``, are replaced by U+FFFD everywhere in the event and counted
(docs/decisions/ingest-nul-policy.md); they never reject a line or fail a file.
"""

from __future__ import annotations

import re
import socket
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from events_pipeline.attribution.domains import host_from_url, normalize_site

#: Namespace of the event ids generated for events without one (uuid5 of
#: ``bucket/key#etag:line``, so a retried load generates the same ids).
EVENT_ID_NAMESPACE = uuid.UUID("6f1c3c2e-8a53-4c1b-9a35-2f4f3a1f0b7e")
NUL = "\x00"
NUL_REPLACEMENT = "\ufffd"

MAX_EVENT_TYPE = 50
MAX_ID_LEN = 100
MAX_PATH = 500
MAX_SITE_ID = 255
MAX_BATCH_ID = 100
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_URL_PATH_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#\s]*([^?#\t\r\n]*)")
_SITE_CACHE: dict[str, str] = {}
_SITE_CACHE_MAX = 50_000
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_pton = socket.inet_pton
_ntop = socket.inet_ntop
#: The Variables of the plausible ``timestamp`` window (registered by ``ingest.pipeline``).
VAR_TIMESTAMP_MIN = "events_ingest_timestamp_min"
VAR_TIMESTAMP_MAX_AHEAD_HOURS = "events_ingest_timestamp_max_ahead_hours"
#: A JSON escape (``\\u0000`` or a one-character one such as ``\\\\``), read left to right.
_ESCAPE_RE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)")
_NUL_ESCAPE_TEXT = "\\u0000"
_NUL_REPLACEMENT_ESCAPE = "\\ufffd"


class TimestampWindow(NamedTuple):
    """The instants an event's ``timestamp`` may hold (both ends included).

    :param earliest: the first instant accepted (Variable ``events_ingest_timestamp_min``).
    :param latest: the last instant accepted (the load's start plus
        ``events_ingest_timestamp_max_ahead_hours``).
    """

    earliest: datetime
    latest: datetime

    def describe(self) -> str:
        """The window for a reason: ``2000-01-01T00:00:00Z .. 2026-11-28T10:00:00Z``."""
        return f"{_utc_text(self.earliest)} .. {_utc_text(self.latest)}"


def _utc_text(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


class LineRejectedError(ValueError):
    """A line breaks contract §2 (docs/contract.md); ``str(exc)`` is the reason written to ``rejected/``."""


class Event(NamedTuple):
    """The validated, normalised columns of one event (``None`` = SQL NULL).

    :param event_id: canonical UUID text (generated when absent).
    :param event_type: 1..50 characters.
    :param timestamp: ISO-8601 text with offset, normalised.
    :param site_id: normalised domain (lower-case, no port, no trailing dot).
    :param session_id: <= 100 characters.
    :param visitor_id: <= 100 characters.
    :param url: as sent.
    :param path: as sent, or derived from ``url``.
    :param user_agent: as sent.
    :param ip_address: canonical IP text.
    :param batch_id: the event's own ``batch_id`` (None: use the file's).
    """

    event_id: str
    event_type: str
    timestamp: str
    site_id: str | None
    session_id: str | None
    visitor_id: str | None
    url: str | None
    path: str | None
    user_agent: str | None
    ip_address: str | None
    batch_id: str | None


def _opt_str(obj: dict[str, Any], field: str, max_len: int | None = None) -> str | None:
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is not str:
        raise LineRejectedError(f"{field} must be a string, got {_json_type(value)}")
    if max_len is not None and len(value) > max_len:
        raise LineRejectedError(f"{field} is {len(value)} characters long; at most {max_len} are allowed")
    return value


def _bad_str(field: str, value: Any, max_len: int | None) -> None:
    _opt_str({field: value}, field, max_len)
    raise AssertionError("unreachable")  # pragma: no cover


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_timestamp(value: Any) -> datetime:
    """Parse an event timestamp: ISO-8601 with offset or ``Z``, or epoch milliseconds.

    :param value: the ``timestamp`` field as decoded from JSON (or a Parquet
        timestamp: an aware datetime, or a naive one taken as UTC).
    :raises LineRejectedError: missing, not parseable, without offset or out of range.
    """
    if value is None:
        raise LineRejectedError("timestamp is missing (required: ISO-8601 with offset or epoch milliseconds)")
    if type(value) is str:
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise LineRejectedError(
                f"timestamp {value[:60]!r} is not an ISO-8601 date-time "
                "(expected e.g. 2026-11-27T10:00:00Z) or epoch milliseconds"
            ) from None
        if ts.tzinfo is None:
            raise LineRejectedError(
                f"timestamp {value[:60]!r} has no UTC offset (add Z or +hh:mm; local times are ambiguous)"
            )
        return ts
    if type(value) is int or type(value) is float:
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise LineRejectedError(f"timestamp {value!r} (epoch milliseconds) is out of range") from None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    raise LineRejectedError(
        f"timestamp must be an ISO-8601 string or epoch milliseconds, got {_json_type(value)}"
    )


def parse_ip(value: Any) -> str | None:
    """Validate an IPv4/IPv6 literal and return its canonical text.

    :param value: the ``ip_address`` field.
    :raises LineRejectedError: not a string or not an IP literal (zone ids like
        ``fe80::1%eth0`` are refused: PostgreSQL's inet cannot hold them).

    Parsing uses the C ``inet_pton``/``inet_ntop`` (10x faster than ``ipaddress``
    on the hot path); it is as strict as ``ipaddress`` (no leading zeros, no
    short forms like ``1.2.3``).
    """
    if value is None:
        return None
    if type(value) is not str:
        raise LineRejectedError(f"ip_address must be a string, got {_json_type(value)}")
    family = _AF_INET6 if ":" in value else _AF_INET
    try:
        return _ntop(family, _pton(family, value))
    except (OSError, ValueError):
        # the value itself is never quoted: it may be a visitor's address in another spelling
        raise LineRejectedError(
            f"ip_address ({len(value)} characters) is not an IPv4 or IPv6 address (strict: no leading "
            "zeros, no short forms, no spaces"
            + ("; zone ids like %eth0 cannot be stored)" if "%" in value else ")")
        ) from None


def check_window(ts: datetime, raw_ts: Any, window: TimestampWindow) -> None:
    """Refuse a timestamp outside the plausible window (contract §2.4).

    :param ts: the parsed timestamp (aware).
    :param raw_ts: the field as sent (for the reason).
    :param window: the accepted instants.
    :raises LineRejectedError: naming the field, its value and the window.
    """
    if window.earliest <= ts <= window.latest:
        return
    shown = raw_ts[:60] if isinstance(raw_ts, str) else raw_ts
    raise LineRejectedError(
        f"timestamp {shown!r} ({_utc_text(ts)}) is outside the accepted window {window.describe()} "
        f"(Variables {VAR_TIMESTAMP_MIN}, {VAR_TIMESTAMP_MAX_AHEAD_HOURS})"
    )


def validate_event(
    obj: Any, *, line_id: str = "", line_no: int | None = None, window: TimestampWindow | None = None
) -> Event:
    """Check one decoded event against contract §2 (docs/contract.md) and return its columns.

    :param obj: the decoded JSON value of the line.
    :param line_id: a stable identity of the line (``bucket/key#etag``, plus
        ``:<line_no>`` when given), used to derive the ``event_id`` of events
        that have none (built only then: this runs once per line).
    :param line_no: the line number appended to ``line_id``.
    :param window: the instants ``timestamp`` may hold (None: any).
    :raises LineRejectedError: the reason the line breaks the rules.
    """
    if type(obj) is not dict:
        raise LineRejectedError(f"line is {_json_type(obj)}, not a JSON object")
    # the common case of each field is checked inline (this runs once per line); the rest,
    # and every reason, is in a helper

    event_type = obj.get("event_type")
    if type(event_type) is not str or not 1 <= len(event_type) <= MAX_EVENT_TYPE:
        _bad_event_type(event_type)

    raw_ts = obj.get("timestamp")
    if type(raw_ts) is str:
        try:
            ts = datetime.fromisoformat(raw_ts)
        except ValueError:
            ts = parse_timestamp(raw_ts)  # raises with the reason
        if ts.tzinfo is None:
            ts = parse_timestamp(raw_ts)
    else:
        ts = parse_timestamp(raw_ts)
    if window is not None and not window.earliest <= ts <= window.latest:
        check_window(ts, raw_ts, window)

    raw_event_id = obj.get("event_id")
    if type(raw_event_id) is str and _UUID_RE.fullmatch(raw_event_id):
        event_id = raw_event_id.lower()
    else:
        event_id = _other_event_id(raw_event_id, line_id, line_no)

    get = obj.get
    session_id = get("session_id")
    if session_id is not None and (type(session_id) is not str or len(session_id) > MAX_ID_LEN):
        _bad_str("session_id", session_id, MAX_ID_LEN)
    visitor_id = get("visitor_id")
    if visitor_id is not None and (type(visitor_id) is not str or len(visitor_id) > MAX_ID_LEN):
        _bad_str("visitor_id", visitor_id, MAX_ID_LEN)
    url = get("url")
    if url is not None and type(url) is not str:
        _bad_str("url", url, None)
    path = get("path")
    if path is not None and (type(path) is not str or len(path) > MAX_PATH):
        _bad_str("path", path, MAX_PATH)
    user_agent = get("user_agent")
    if user_agent is not None and type(user_agent) is not str:
        _bad_str("user_agent", user_agent, None)
    batch_id = get("batch_id")
    if batch_id is not None and (type(batch_id) is not str or len(batch_id) > MAX_BATCH_ID):
        _bad_str("batch_id", batch_id, MAX_BATCH_ID)
    raw_ip = get("ip_address")
    ip = None if raw_ip is None else parse_ip(raw_ip)

    raw_site = get("site_id")
    site_id = _SITE_CACHE.get(raw_site) if type(raw_site) is str else None
    if site_id is None:
        site_id = _site_id(raw_site, url)
    if site_id is not None and len(site_id) > MAX_SITE_ID:
        raise LineRejectedError(
            f"site_id is {len(site_id)} characters long; at most {MAX_SITE_ID} are allowed"
        )

    if path is None and url:
        path = derive_path(url)

    return Event(
        event_id,
        event_type,
        ts.isoformat(),
        site_id,
        session_id,
        visitor_id,
        url,
        path,
        user_agent,
        ip,
        batch_id,
    )


def _bad_event_type(event_type: Any) -> None:
    """Raise the reason an ``event_type`` that is not a string of 1 to 50 characters is refused.

    :param event_type: the field as decoded.
    :raises LineRejectedError: always.
    """
    if event_type is None:
        raise LineRejectedError("event_type is missing (required string of 1 to 50 characters)")
    if type(event_type) is not str:
        raise LineRejectedError(f"event_type must be a string, got {_json_type(event_type)}")
    raise LineRejectedError(f"event_type must be 1 to {MAX_EVENT_TYPE} characters long, is {len(event_type)}")


def _other_event_id(raw_event_id: Any, line_id: str, line_no: int | None) -> str:
    """The ``event_id`` of an event whose id is not a canonical-length UUID string.

    Missing: derived from the line's identity (uuid5 of ``line_id:line_no``, so a
    retried load derives the same id; random without an identity). A UUID in
    another spelling (no dashes, braces, ``urn:uuid:``): its canonical text.

    :param raw_event_id: the field as decoded.
    :param line_id: the line's stable identity (``bucket/key#etag``), or ``""``.
    :param line_no: its line number, appended to ``line_id`` when given.
    :raises LineRejectedError: not a string, or not a UUID.
    """
    if raw_event_id is None:
        if line_id and line_no is not None:
            line_id = f"{line_id}:{line_no}"
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, line_id)) if line_id else str(uuid.uuid4())
    if type(raw_event_id) is not str:
        raise LineRejectedError(f"event_id must be a UUID string, got {_json_type(raw_event_id)}")
    if _UUID_RE.fullmatch(raw_event_id):
        return raw_event_id.lower()
    try:
        return str(uuid.UUID(raw_event_id))
    except ValueError:
        raise LineRejectedError(f"event_id {raw_event_id[:60]!r} is not a UUID") from None


def _site_id(raw_site: Any, url: str | None) -> str | None:
    """The normalised ``site_id`` of a site not in the cache yet (cached when it is a domain).

    Missing or empty: the host of ``url``, when there is one.

    :param raw_site: the field as decoded.
    :param url: the event's URL (already checked to be a string or None).
    :raises LineRejectedError: not a string.
    """
    if raw_site is None or raw_site == "":
        return host_from_url(url) if url else None
    if type(raw_site) is not str:
        raise LineRejectedError(f"site_id must be a string (a domain), got {_json_type(raw_site)}")
    site_id = normalize_site(raw_site)
    if site_id is not None and len(_SITE_CACHE) < _SITE_CACHE_MAX:
        _SITE_CACHE[raw_site] = site_id
    return site_id


def derive_path(url: str) -> str | None:
    """Return the path of ``url`` (``None`` if it has none or cannot be parsed).

    A derived path longer than 500 characters is cut to 500 (the column's
    size); the full URL is still stored in ``url`` and ``raw_event_data``.

    :param url: the event's URL.
    """
    m = _URL_PATH_RE.match(url)
    if m is not None and (m.end() == len(url) or url[m.end()] in "?#"):
        path = m.group(1)
    else:
        try:
            path = urlsplit(url).path
        except ValueError:
            return None
    return path[:MAX_PATH] if path else None


def replace_nul_text(text: str) -> str:
    """Replace every ``\\u0000`` escape of a JSON text by ``\\ufffd`` (U+FFFD), keeping every other byte.

    The text-level twin of :func:`replace_nul`: decoding the result gives what
    :func:`replace_nul` gives for the decoded text (keys and values), and numbers,
    spacing and every other escape stay as sent. Escapes are read left to right, so
    ``\\\\u0000`` (an escaped backslash, then ``u0000``) is left alone.

    :param text: a JSON text (a raw NUL byte cannot be in one: JSON refuses control characters).
    """
    if _NUL_ESCAPE_TEXT not in text:
        return text
    return _ESCAPE_RE.sub(
        lambda m: _NUL_REPLACEMENT_ESCAPE if m.group() == _NUL_ESCAPE_TEXT else m.group(), text
    )


def site_of(obj: Any) -> str | None:
    """The normalised site of a decoded line, whatever else is wrong with it (None: none found).

    Used to decide how a REJECTED line is written (contract §2.5): ``site_id`` when it
    is a non-empty string, else the host of ``url`` when that is a string.

    :param obj: the decoded JSON value of the line.
    """
    if type(obj) is not dict:
        return None
    site, url = obj.get("site_id"), obj.get("url")
    if type(site) is str and site:
        return normalize_site(site)
    if site in (None, "") and type(url) is str and url:
        return host_from_url(url)
    return None


def replace_nul(value: Any) -> tuple[Any, int]:
    """Replace every NUL character in strings (keys included) of a JSON value by U+FFFD.

    :param value: a decoded JSON value.
    :return: the cleaned value and how many strings contained a NUL.
    """
    if type(value) is str:
        return (value.replace(NUL, NUL_REPLACEMENT), 1) if NUL in value else (value, 0)
    if type(value) is dict:
        out: dict[str, Any] = {}
        count = 0
        for k, v in value.items():
            k2, c1 = replace_nul(k)
            v2, c2 = replace_nul(v)
            out[k2] = v2
            count += c1 + c2
        return out, count
    if type(value) is list:
        items = []
        count = 0
        for v in value:
            v2, c = replace_nul(v)
            items.append(v2)
            count += c
        return items, count
    return value, 0
