"""The per-line path of ingest: decoded lines -> PostgreSQL COPY text rows.

:class:`RowBuilder` validates each line (``validation``), attributes it
(``attribution``), applies the GDPR treatment (``privacy``) and writes one
COPY text-format row per good line; bad lines go to a :class:`RejectSink`.
The original JSON text itself becomes ``raw_event_data`` (escaped for COPY):
the GDPR treatment and the NUL replacement are edits of that text, so nothing
is re-serialised and every string and number survives byte for byte
(contract §2.4). A rejected line of a GDPR client or of an unknown site is
written with its IPs treated, and no reason quotes an IP (contract §2.5). A line of a
visitor the client had erased, from before the erasure, is dropped - neither a row nor a
reject - and counted (:mod:`~events_pipeline.ingest.erased_visitors`, contract §6.5).
"""

from __future__ import annotations

import json
import tempfile
from array import array
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

import orjson

from events_pipeline.attribution.domains import GDPR, DomainMatcher
from events_pipeline.ingest.erased_visitors import ErasedVisitors
from events_pipeline.ingest.validation import (
    LineRejectedError,
    TimestampWindow,
    parse_timestamp,
    replace_nul_text,
    site_of,
    validate_event,
)
from events_pipeline.privacy.fast_treatment import IpProtector, protect_rejected_line, scrub_ips

#: Column order of ``include/sql/ingest/copy_events.sql`` (``raw_event_data`` last: the
#: fast path writes the original line and its ``\\n`` straight from the input buffer).
COPY_COLUMNS = (
    "event_id",
    "event_type",
    "session_id",
    "visitor_id",
    "site_id",
    "timestamp",
    "url",
    "path",
    "user_agent",
    "ip_address",
    "client_id",
    "batch_id",
    "privacy_level",
    "file_id",
    "raw_event_data",
)
NULL = "\\N"
_NUL_ESCAPE = "\\u0000"
#: orjson's message for a number beyond a double's range (``1e400``): valid JSON all the same.
_HUGE_NUMBER = "number is infinity"


def copy_text(value: str | None) -> str:
    """Escape a value for PostgreSQL's COPY text format (``None`` -> ``\\N``).

    Backslash, tab, newline and carriage return are the only characters with a
    meaning there; everything else passes through unchanged.

    :param value: the text, or None for SQL NULL.
    """
    if value is None:
        return NULL
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value:
        value = value.replace("\t", "\\t")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if "\r" in value:
        value = value.replace("\r", "\\r")
    return value


class RejectSink:
    """Collects rejected lines as NDJSON in a spooled temporary file (bounded memory).

    :param max_memory: bytes kept in memory before spilling to disk.
    """

    def __init__(self, max_memory: int = 8 << 20) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=max_memory)  # noqa: SIM115
        self.count = 0

    def add(self, line: int, reason: str, raw: str) -> None:
        """Record one rejected line.

        :param line: 1-based line (or Parquet row) number.
        :param reason: why, for a person (never quoting an IP).
        :param raw: the line as it goes to ``rejected/`` (IPs already treated where due).
        """
        self._file.write(orjson.dumps({"line": line, "reason": reason, "raw": raw}) + b"\n")
        self.count += 1

    def reset(self) -> None:
        """Forget everything (a load attempt is being redone from the start)."""
        self._file.seek(0)
        self._file.truncate()
        self.count = 0

    def stream(self) -> IO[bytes]:
        """Return the file rewound to its start, for upload."""
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        """Delete the spool file."""
        self._file.close()


class RowBuilder:
    """Turns blocks of lines (or Parquet rows) into COPY text, counting as it goes.

    :param matcher: the file's domain matcher.
    :param file_id: registry id written to every row.
    :param file_batch_id: ``batch_id`` of events that carry none.
    :param line_id_prefix: ``bucket/key#etag``, to derive ids of events without one.
    :param secret: returns the IP pseudonym key (read only when a GDPR event needs it).
    :param rejects: where bad lines go.
    :param skip_lines: line numbers not to parse, mapped to the reason to reject them
        with (set after PostgreSQL refused them, or when a line is too long), or to None:
        leave the line out silently (a replayed line already loaded, counted in ``dropped``).
    :param window: the instants ``timestamp`` may hold (None: any).
    :param erased: the tombstones of the file's clients: lines of an erased visitor from
        before its erasure are dropped (None or empty: no check at all).
    """

    def __init__(
        self,
        matcher: DomainMatcher,
        *,
        file_id: int,
        file_batch_id: str,
        line_id_prefix: str,
        secret: Callable[[], str],
        rejects: RejectSink,
        skip_lines: dict[int, str | None] | None = None,
        window: TimestampWindow | None = None,
        erased: ErasedVisitors | None = None,
    ) -> None:
        self._matcher = matcher
        #: None unless some client has a tombstone (the per-row check is one attribute test)
        self._erased = erased if erased else None
        self._file_id = str(file_id)
        self._file_batch_id = copy_text(file_batch_id)
        self._line_id_prefix = line_id_prefix
        self._secret_fn = secret
        self._protector: IpProtector | None = None
        self.rejects = rejects
        self.skip_lines = skip_lines if skip_lines is not None else {}
        self.window = window
        self.line_no = 0
        self.rows = 0
        self.rows_with_batch = 0
        self.blank = 0
        self.nul_lines = 0
        #: lines left out silently (``skip_lines`` mapped to None)
        self.dropped = 0
        self.per_client: dict[str, int] = {}
        #: lines dropped for erased visitors, per erasure request, and their numbers
        self.erased_per_request: dict[int, int] = {}
        self.erased_line_numbers: list[int] = []
        self.batch_ids: set[str] = set()
        #: COPY data row number (1-based) -> source line, to map PostgreSQL errors back.
        self.copy_line_to_source = array("q", [0])

    @property
    def erased(self) -> int:
        """Lines dropped for erased visitors (neither loaded nor rejected)."""
        return len(self.erased_line_numbers)

    def _drop_erased(self, n: int, request_id: int) -> None:
        """Count line ``n`` as dropped for erasure request ``request_id``."""
        self.erased_per_request[request_id] = self.erased_per_request.get(request_id, 0) + 1
        self.erased_line_numbers.append(n)

    def _erased_reject(self, client_id: str, obj: Any) -> int | None:
        """The request covering a line about to be rejected (None: reject it).

        A rejected line of an erased visitor on the client's site is dropped unless its
        timestamp shows it came after the erasure (one that cannot be read does not).

        :param client_id: the owner of the line's site.
        :param obj: the decoded line (a dict).
        """
        assert self._erased is not None
        visitor = obj.get("visitor_id")
        if self._erased.tombstone(client_id, visitor) is None:
            return None
        try:
            ts: datetime | None = parse_timestamp(obj.get("timestamp"))
        except (LineRejectedError, ValueError, TypeError, OverflowError):
            ts = None
        return self._erased.erased_by(client_id, visitor, ts)

    def _ip_protector(self) -> IpProtector:
        if self._protector is None:
            self._protector = IpProtector(self._secret_fn())
        return self._protector

    def ndjson_block(self, lines: list[str]) -> bytes:
        """Convert one block of NDJSON lines; return the COPY text of the good ones.

        :param lines: decoded lines without their ``\\n``.
        """
        out: list[str] = []
        for line in lines:
            self.line_no += 1
            row = self.ndjson_line(line, self.line_no)
            if row is not None:
                out.append(row)
        return "".join(out).encode("utf-8")

    def ndjson_line(self, line: str, n: int) -> str | None:
        """Convert one NDJSON line (the reference per-line path); return its COPY row or None.

        A blank line is counted, a bad line goes to the reject sink; ``line_no``
        is NOT advanced here (the caller numbers lines).

        :param line: the decoded line without its ``\\n``.
        :param n: its 1-based line number.
        """
        if self.skip_lines and n in self.skip_lines:
            self._skip(n, line)
            return None
        try:
            obj = parse_json(line)
        except ValueError as exc:
            if not line or line.isspace():
                self.blank += 1
                return None
            self._reject(n, f"not valid JSON: {exc}", line, _NOT_JSON)
            return None
        return self._row(obj, line, n)

    def _skip(self, n: int, line: str) -> None:
        """Reject (or drop) a line of ``skip_lines`` without converting it.

        :param n: its line number.
        :param line: the line (or what stands for it).
        """
        reason = self.skip_lines[n]
        if reason is None:
            self.dropped += 1
            return
        try:
            obj = parse_json(line)
        except ValueError:
            obj = _NOT_JSON
        self._reject(n, reason, line, obj)

    def _reject(self, n: int, reason: str, raw: str, obj: Any) -> None:
        """Send a line to the reject sink, its IPs treated unless it is a known standard client's.

        The reason never quotes an IP (:func:`~events_pipeline.privacy.fast_treatment.scrub_ips`).
        The line keeps every byte when it belongs to a standard client; a GDPR client's,
        and one whose site is unknown (no site, or one of no client: it may be a GDPR
        client's), gets ``protect_rejected_line``.

        :param n: the line number.
        :param reason: why, for a person.
        :param raw: the line as received.
        :param obj: the decoded line, or ``_NOT_JSON``.
        """
        owner = self._matcher.match(site_of(obj) if obj is not _NOT_JSON else None)
        if self._erased is not None and owner.client_id in self._erased.clients and type(obj) is dict:
            request_id = self._erased_reject(owner.client_id, obj)
            if request_id is not None:
                self._drop_erased(n, request_id)
                return
        if owner.privacy_level == GDPR or not owner.client_id:
            raw = protect_rejected_line(raw, is_json=obj is not _NOT_JSON)
        self.rejects.add(n, scrub_ips(reason), raw)

    def record_block(self, records: list[dict[str, Any]]) -> bytes:
        """Convert one block of Parquet rows (dicts); return the COPY text of the good ones.

        A row's ``raw_event_data`` is its JSON serialisation (numbers exact: a decimal
        is written with all its digits).

        :param records: rows as dicts with contract §2 (docs/contract.md) field names.
        """
        out: list[str] = []
        for record in records:
            self.line_no += 1
            n = self.line_no
            raw = orjson.dumps(record, default=_parquet_value, option=orjson.OPT_NAIVE_UTC).decode("utf-8")
            if self.skip_lines and n in self.skip_lines:
                self._skip(n, raw)
                continue
            row = self._row(record, raw, n)
            if row is not None:
                out.append(row)
        return "".join(out).encode("utf-8")

    def _row(self, obj: Any, raw: str, n: int) -> str | None:
        original = raw
        if _NUL_ESCAPE in raw:
            cleaned = replace_nul_text(raw)
            if cleaned != raw:
                raw = cleaned
                obj = parse_json(raw)
                self.nul_lines += 1
        try:
            ev = validate_event(obj, line_id=self._line_id_prefix, line_no=n, window=self.window)
        except LineRejectedError as exc:
            self._reject(n, str(exc), original, obj)
            return None
        owner = self._matcher.match(ev.site_id)
        if self._erased is not None and ev.visitor_id is not None and owner.client_id in self._erased.clients:
            request_id = self._erased.erased_by(
                owner.client_id, ev.visitor_id, datetime.fromisoformat(ev.timestamp)
            )
            if request_id is not None:
                self._drop_erased(n, request_id)
                return None
        ip = ev.ip_address
        if owner.privacy_level == GDPR:
            # every IP of the event leaves its text by an edit (contract §6.3): nothing is re-serialised
            raw, ip = self._ip_protector().protect_line(raw, ip)
        client_id = owner.client_id
        self.per_client[client_id] = self.per_client.get(client_id, 0) + 1
        batch_id = ev.batch_id
        if batch_id is not None:
            self.batch_ids.add(batch_id)
            self.rows_with_batch += 1
            batch_text = copy_text(batch_id)
        else:
            batch_text = self._file_batch_id
        self.rows += 1
        self.copy_line_to_source.append(n)
        # one f-string per row; copy_text only where a value may hold a COPY special
        # (event_id, timestamp, ip and client_id are validated to hold none)
        event_type, session_id, visitor_id, site_id, url, path, user_agent = (
            ev.event_type,
            ev.session_id,
            ev.visitor_id,
            ev.site_id,
            ev.url,
            ev.path,
            ev.user_agent,
        )
        return (
            f"{ev.event_id}\t{copy_text(event_type)}\t"
            f"{NULL if session_id is None else copy_text(session_id)}\t"
            f"{NULL if visitor_id is None else copy_text(visitor_id)}\t"
            f"{NULL if site_id is None else copy_text(site_id)}\t{ev.timestamp}\t"
            f"{NULL if url is None else copy_text(url)}\t{NULL if path is None else copy_text(path)}\t"
            f"{NULL if user_agent is None else copy_text(user_agent)}\t"
            f"{ip if ip is not None else NULL}\t"
            f"{client_id if client_id else NULL}\t{batch_text}\t{owner.privacy_level}\t{self._file_id}\t"
            f"{copy_text(raw)}\n"
        )


#: Stands for the decoded value of a line that is not valid JSON.
_NOT_JSON = object()


def parse_json(text: str) -> Any:
    """Decode one line of JSON (``orjson``), also when it holds a number beyond a double's range.

    ``1e400`` or ``-1e400`` are valid JSON that orjson refuses; such a line is decoded
    by the standard library instead (the number becomes an infinite float: it is kept
    exactly in ``raw_event_data``, the text, and refused in a contract field).

    :param text: the line.
    :raises ValueError: not valid JSON (``orjson.JSONDecodeError``), with orjson's reason.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if _HUGE_NUMBER not in str(exc):
            raise
        try:
            value = json.loads(text, parse_constant=_no_constant)
            json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates fail, as in orjson
        except ValueError:  # (UnicodeEncodeError is one)
            raise exc from None
        return value


def _no_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (the standard library accepts them)."""
    raise ValueError(f"{name} is not valid JSON")


def _parquet_value(value: Any) -> Any:
    """What orjson writes for a Parquet value it has no type for: a decimal as a JSON number, else text."""
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    return str(value)
