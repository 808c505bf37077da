"""The hot path of ingest: decoded lines -> PostgreSQL COPY text rows.

:class:`RowBuilder` validates each line (``validation``), attributes it
(``attribution``), applies the GDPR treatment (``privacy``) and writes one
COPY text-format row per good line; bad lines go to a :class:`RejectSink`.
For a clean, non-GDPR line the original JSON text itself becomes
``raw_event_data`` (escaped for COPY), so nothing is re-serialised and every
string survives byte for byte.
"""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Callable
from typing import IO, Any

import orjson

from events_pipeline.attribution.domains import GDPR, DomainMatcher
from events_pipeline.ingest.validation import LineRejectedError, replace_nul, validate_event
from events_pipeline.privacy.fast_treatment import IpProtector

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
        :param reason: why, for a person.
        :param raw: the original line.
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
    :param secret: returns the IP pseudonym key (read only when a GDPR event has an IP).
    :param rejects: where bad lines go.
    :param skip_lines: line numbers to reject without parsing (set after
        PostgreSQL refused them), mapped to the reason.
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
        skip_lines: dict[int, str] | None = None,
    ) -> None:
        self._matcher = matcher
        self._file_id = str(file_id)
        self._file_batch_id = copy_text(file_batch_id)
        self._line_id_prefix = line_id_prefix
        self._secret_fn = secret
        self._protector: IpProtector | None = None
        self.rejects = rejects
        self.skip_lines = skip_lines or {}
        self.line_no = 0
        self.rows = 0
        self.rows_with_batch = 0
        self.blank = 0
        self.nul_lines = 0
        self.per_client: dict[str, int] = {}
        self.batch_ids: set[str] = set()
        #: COPY data row number (1-based) -> source line, to map PostgreSQL errors back.
        self.copy_line_to_source = array("q", [0])

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
            self.rejects.add(n, self.skip_lines[n], line)
            return None
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if not line or line.isspace():
                self.blank += 1
                return None
            self.rejects.add(n, f"not valid JSON: {exc}", line)
            return None
        return self._row(obj, line, n)

    def record_block(self, records: list[dict[str, Any]]) -> bytes:
        """Convert one block of Parquet rows (dicts); return the COPY text of the good ones.

        :param records: rows as dicts with contract §2 (docs/contract.md) field names.
        """
        out: list[str] = []
        for record in records:
            self.line_no += 1
            n = self.line_no
            raw = orjson.dumps(record, default=str, option=orjson.OPT_NAIVE_UTC).decode("utf-8")
            if self.skip_lines and n in self.skip_lines:
                self.rejects.add(n, self.skip_lines[n], raw)
                continue
            row = self._row(record, raw, n, reserialize=True)
            if row is not None:
                out.append(row)
        return "".join(out).encode("utf-8")

    def _row(self, obj: Any, raw: str | None, n: int, *, reserialize: bool = False) -> str | None:
        original = raw
        if _NUL_ESCAPE in raw:  # type: ignore[operator]
            obj, replaced = replace_nul(obj)
            if replaced:
                self.nul_lines += 1
                reserialize = True
        try:
            ev = validate_event(obj, line_id=self._line_id_prefix, line_no=n)
        except LineRejectedError as exc:
            self.rejects.add(n, str(exc), original)  # type: ignore[arg-type]
            return None
        owner = self._matcher.match(ev.site_id)
        ip = ev.ip_address
        if owner.privacy_level == GDPR and ip is not None:
            # the IP leaves the text by an edit of its value where that is unambiguous
            # (gdpr_ingest.editable_text), else by re-serialising the treated event
            edited = None if reserialize else self._ip_protector().protect_text(raw, ip)  # type: ignore[arg-type]
            if edited is not None:
                raw, ip = edited
            else:
                obj, ip = self._ip_protector().protect_event(obj, ip)
                reserialize = True
        if reserialize:
            raw = orjson.dumps(obj, default=str, option=orjson.OPT_NAIVE_UTC).decode("utf-8")
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
