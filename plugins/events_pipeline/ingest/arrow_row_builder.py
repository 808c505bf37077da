"""The vectorised fast path of ingest: blocks of NDJSON bytes -> COPY text, in Arrow.

:class:`FastRowBuilder` is a :class:`~events_pipeline.ingest.row_builder.RowBuilder`
(same counters, same reject sink, same ``copy_line_to_source``) that handles a
whole block of lines at C speed and sends to the reference per-line path
(``RowBuilder.ndjson_line``) every line it is not SURE about:

1. the block is split into lines by ``numpy`` (offsets into the block, no
   Python object per line); lines that look like one plain JSON object (start
   with ``{``, end with ``}``) and pass one RE2 screen (no ``NaN``/``Infinity``
   token, no ``\\u0000`` escape, no huge number, no contract field holding a
   non-string) are parsed together by ``pyarrow.json`` with an explicit schema
   of the contract §2 (docs/contract.md) top-level fields; a group Arrow refuses (bad JSON, a field
   of the wrong type, a duplicated field, two objects on one line) is bisected
   down to small groups that go to the reference path;
2. conservative vectorised checks pick the rows that pass every contract §2 (docs/contract.md) rule
   AND need no transformation: lower-case canonical ``event_id``; canonical
   ISO-8601 ``timestamp`` with ``T``, ``Z`` or ``+hh:mm`` (days 29-31 only in
   months that have them, offsets up to 14:59, at most 6 fraction digits);
   already-normalised ``site_id``; IPv4 in canonical dotted form or IPv6 in
   the full 8-group form; lengths within the limits; a ``path`` derivable
   from an ASCII ``url`` by the same rule as ``validation.derive_path``;
   nesting orjson accepts;
3. the chosen rows become COPY text in Arrow (``binary_join_element_wise``),
   with the ORIGINAL line as ``raw_event_data``; a GDPR client's row with an
   IP gets the text edit of ``fast_treatment.IpProtector.protect_text`` (address
   truncated in place, pseudonym member added), made with plain splits and
   joins, each distinct address hashed once - only when that address is the
   line's one string that may be an IP literal (``IP_VALUE_PATTERN``); a GDPR
   row with another one (nested, repeated, in an array, escaped) takes the
   per-line path, which treats every IP of the event (contract §6.3);
   everything else goes through ``RowBuilder.ndjson_line`` - same rows, same
   rejects, same reasons. When a client of the file has an erasure tombstone, the
   rows of a (client, visitor) that has one take the per-line path too, which drops
   those from before the erasure (``erased_visitors``); each distinct pair is hashed
   once per group, and without any tombstone nothing of this is done.

Differences to the reference path are textual only, never in the stored
value: ``timestamp`` is sent as written (``...00.000Z``), not as Python's
``isoformat()`` (``...00+00:00``); an IPv6 address is sent in its full form,
not compressed (PostgreSQL's ``timestamptz``/``inet`` store the same value);
rows of a block are sent fast rows first (``copy_line_to_source`` maps every
COPY row to its source line either way). ``tests/unit/ingest/test_arrow_row_builder.py``
compares both paths on generated and hand-written lines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from events_pipeline.attribution.domains import GDPR
from events_pipeline.ingest.row_builder import NULL, RowBuilder
from events_pipeline.ingest.validation import MAX_BATCH_ID, MAX_EVENT_TYPE, MAX_ID_LEN, MAX_PATH, MAX_SITE_ID
from events_pipeline.privacy.fast_treatment import (
    IP_KEY_TEXT,
    IP_VALUE_PATTERN,
    PSEUDONYM_KEY_TEXT,
    TWO_IP_VALUES_PATTERN,
    pseudonym_member,
)
from events_pipeline.privacy.visitor_digest import DIGEST_SEPARATOR

if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    # Arrow allocates through the C library's malloc, not pyarrow's default mimalloc: mimalloc
    # hands freed pages back to the OS whenever the loader waits ~10 ms (for PostgreSQL or S3)
    # and the next block faults them in again; the kernel zeroing those pages was ~5 % of a
    # loader's CPU (perf), and interleaved A/B runs of two loaders gave -5 % Python CPU.
    pa.set_memory_pool(pa.system_memory_pool())

#: The top-level fields of contract §2 (docs/contract.md), read as strings (other JSON types fail the group).
FIELDS = (
    "event_id",
    "event_type",
    "timestamp",
    "site_id",
    "session_id",
    "visitor_id",
    "url",
    "path",
    "user_agent",
    "ip_address",
    "batch_id",
)
_SCHEMA = pa.schema([(f, pa.string()) for f in FIELDS])
_PARSE = pj.ParseOptions(
    explicit_schema=_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=False
)
#: A typed NULL; building it also makes pyarrow do, at import time, the one-off work of its
#: first Python -> Arrow conversion (it imports pandas: ~1 s of CPU once per process).
_NULL_TEXT = pa.scalar(None, pa.string())
#: The type ``timestamp`` texts are read as, to compare them with the plausible window.
_INSTANT = pa.timestamp("us", tz="UTC")
# scalars made once (a Python value costs ~6 us of conversion on every compute call)
_FALSE, _EMPTY, _GDPR = pa.scalar(False), pa.scalar("", pa.string()), pa.scalar(GDPR, pa.string())
_ZERO, _ONE = pa.scalar(0, pa.int32()), pa.scalar(1, pa.int32())
_MAX_EVENT_TYPE, _MAX_SITE_ID = pa.scalar(MAX_EVENT_TYPE, pa.int32()), pa.scalar(MAX_SITE_ID, pa.int32())
_MAX_PATH = pa.scalar(MAX_PATH, pa.int32())
_TAB = pa.scalar("\t", pa.string())
_JOIN_COPY = pc.JoinOptions(null_handling="replace", null_replacement=NULL)
#: session_id, visitor_id and batch_id are checked together, on the longest of the three
_MAX_ID_LEN = pa.scalar(min(MAX_ID_LEN, MAX_BATCH_ID), pa.int32())
#: Groups of at most this many lines that Arrow refuses go to the per-line path whole.
MIN_BISECT = 16
#: orjson refuses nesting deeper than 1024; lines with this many brackets take the per-line path.
MAX_BRACKETS = 512
_LONG_LINE = pa.scalar(2 * MAX_BRACKETS, pa.int32())

# lines Arrow and orjson could judge differently, or that need a NUL replacement
_SUSPECT_LINE = r"NaN|Infinity|\\u0000|[:,\[]\s*-?[0-9]+(\.[0-9]+)?[eE][+-]?[0-9]{3}|[0-9]{300}"
# a contract field whose value is not a string or null (anywhere in the line, so nested keys too)
_NON_STRING_FIELD = r'"(?:' + "|".join(FIELDS) + r')"\s*:\s*[^"\s n]'
_SCREEN = _SUSPECT_LINE + "|" + _NON_STRING_FIELD
#: Arrow parses at most this many times a block's candidate lines (re-parses included).
MAX_PARSE_FACTOR = 3
#: After this many refusals by Arrow in one block, its remaining lines take the per-line path.
MAX_REFUSALS = 8
#: After Arrow refused a line, the lines after it are parsed in groups of this many.
RETRY_PIECE = 256
_ERROR_ROW_RE = re.compile(r"in row (\d+)")
_NEWLINE, _OPEN, _CLOSE = ord("\n"), ord("{"), ord("}")
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_DATE = (
    r"(?:(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    r"|(?:19|20)[0-9]{2}-(?:0[13-9]|1[0-2])-(?:29|30)"
    r"|(?:19|20)[0-9]{2}-(?:0[13578]|1[02])-31)"
)
_TIMESTAMP = (
    "^"
    + _DATE
    + r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])$"
)
_SITE = r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IP = r"^(?:" + _OCTET + r"(?:\." + _OCTET + r"){3}|[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7})$"
# validation._URL_PATH_RE restricted to URLs of printable ASCII (so ``\s`` cannot differ between
# RE2 and Python): scheme, "://", netloc up to / ? #, then the path up to ? or # (or the end)
_URL_PATH = (
    r"^[A-Za-z][A-Za-z0-9+.\-]*://[\x21-\x22\x24-\x2e\x30-\x3e\x40-\x7e]*"
    r"(?P<path>[\x21-\x22\x24-\x3e\x40-\x7e]*)(?:[?#][\x21-\x7e]*)?$"
)


#: The compact spelling of the top-level ip_address member up to its value (GDPR text edit).
_IP_MEMBER_OPEN = IP_KEY_TEXT + ':"'
_IP_KEY_BYTES, _PSEUDONYM_KEY_BYTES = IP_KEY_TEXT.encode(), PSEUDONYM_KEY_TEXT.encode()
_IP_MEMBER_OPEN_SCALAR = pa.scalar(_IP_MEMBER_OPEN, pa.string())
#: The pseudonym member up to its value: ``,"ip_pseudonym":"``.
_PSEUDONYM_OPEN = pa.scalar(pseudonym_member("")[:-1], pa.string())
_QUOTE, _CLOSE_LINE = pa.scalar('"', pa.string()), pa.scalar("}\n", pa.string())
_NEWLINE_TEXT = pa.scalar("\n", pa.string())
_DIGEST_SEPARATOR = pa.scalar(DIGEST_SEPARATOR, pa.string())
#: The last octet of a canonical dotted IPv4 address, and what truncation puts there.
_LAST_OCTET, _ZERO_OCTET = r"\.[0-9]+$", ".0"


def _array(column: pa.ChunkedArray) -> pa.Array:
    """One contiguous array of a table column."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _escape(arr: pa.Array) -> pa.Array:
    """COPY text escaping (``copy_rows.copy_text``) of a string array, nulls kept."""
    arr = pc.replace_substring(arr, "\\", "\\\\")
    arr = pc.replace_substring(arr, "\t", "\\t")
    arr = pc.replace_substring(arr, "\n", "\\n")
    return pc.replace_substring(arr, "\r", "\\r")


class FastRowBuilder(RowBuilder):
    """A :class:`RowBuilder` that converts NDJSON byte blocks in Arrow where it is safe.

    Same constructor parameters as :class:`RowBuilder`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: lines converted by the fast path / sent to the per-line path (for logs and benchmarks)
        self.fast_lines = 0
        self.slow_lines = 0
        #: set when a block exhausted MAX_REFUSALS: the rest of the file takes the per-line path
        self.arrow_off = False
        self._skip_sorted: np.ndarray | None = None
        self._file_id_scalar = pa.scalar(self._file_id, pa.string())
        self._batch_scalar = pa.scalar(self._file_batch_id, pa.string())
        self._window = (
            None
            if self.window is None
            else (pa.scalar(self.window.earliest, _INSTANT), pa.scalar(self.window.latest, _INSTANT))
        )

    def ndjson_bytes_block(self, data: bytes) -> bytes:
        """Convert one block of NDJSON (``iter_byte_blocks``); return the COPY text of its good lines.

        :meth:`ndjson_bytes_parts` joined into one ``bytes``.

        :param data: valid UTF-8, lines joined by ``\\n``.
        """
        return b"".join(self.ndjson_bytes_parts(data))

    def ndjson_bytes_parts(self, data: bytes) -> list[bytes | memoryview]:
        """Convert one block of NDJSON (``iter_byte_blocks``); return the COPY text of its good lines.

        The text comes in a few parts (views of Arrow's buffers, not copied into
        one ``bytes``), each holding whole rows.

        The block is split into lines, screened and parsed without a Python
        object per line: only the lines sent to the per-line path are decoded.

        :param data: valid UTF-8, lines joined by ``\\n``.
        """
        lines = _BlockLines(data)
        first_no = self.line_no + 1
        self.line_no += lines.count
        out: list[bytes | memoryview] = []
        slow: list[int] = []
        skip = self._skip_in_block(first_no, lines.count)
        if self.arrow_off:
            slow.extend(self._count_empty(lines, np.arange(lines.count), skip).tolist())
        else:
            cand = lines.candidates(skip)
            if len(cand) < lines.count:
                rest = np.setdiff1d(np.arange(lines.count), cand, assume_unique=True)
                slow.extend(self._count_empty(lines, rest, skip).tolist())
            if len(cand):
                cand_raw = lines.take(cand)
                cand, cand_raw = self._screen(cand, cand_raw, slow)
                if len(cand):
                    self._parse_groups(lines, cand, cand_raw, out, slow)
        slow.sort()
        self.fast_lines += lines.count - len(slow)
        self.slow_lines += len(slow)
        rows: list[str] = []
        for i in slow:
            row = self.ndjson_line(lines.text(i), first_no + i)
            if row is not None:
                rows.append(row)
        if rows:
            out.append("".join(rows).encode("utf-8"))
        return out

    def _skip_in_block(self, first_no: int, count: int) -> list[int]:
        """Block indexes of the ``skip_lines`` among the block's ``count`` lines from line ``first_no``.

        ``skip_lines`` only grows (a long line found while reading, a line refused): its
        sorted copy is rebuilt when its size changed, so a replay that leaves many lines
        out costs a binary search per block, not a pass over all of them.

        :param first_no: the block's first line number.
        :param count: lines in the block.
        """
        if not self.skip_lines:
            return []
        if self._skip_sorted is None or len(self._skip_sorted) != len(self.skip_lines):
            self._skip_sorted = np.sort(np.fromiter(self.skip_lines, np.int64, len(self.skip_lines)))
        lo, hi = np.searchsorted(self._skip_sorted, [first_no, first_no + count])
        return (self._skip_sorted[lo:hi] - first_no).tolist()

    def _count_empty(self, lines: _BlockLines, idx: np.ndarray, skip: list[int]) -> np.ndarray:
        """Count the empty lines among ``idx`` as blank (as the per-line path would); return the others.

        Lines of ``skip_lines`` are never counted here.

        :param lines: the block.
        :param idx: indexes of lines about to go to the per-line path.
        :param skip: indexes of the block's ``skip_lines``.
        """
        empty = lines.offsets[idx + 1] - lines.offsets[idx] == 1  # the line is only its "\n"
        if skip:
            empty &= ~np.isin(idx, skip)
        found = int(empty.sum())
        if not found:
            return idx
        self.blank += found
        return idx[~empty]

    def _screen(self, cand: np.ndarray, raw: pa.Array, slow: list[int]) -> tuple[np.ndarray, pa.Array]:
        """Send to ``slow`` the candidates one RE2 scan flags; return the others (lines, texts).

        Flagged: what Arrow and orjson judge differently (``NaN``, ``Infinity``,
        huge numbers), the ``\\u0000`` escape, and a contract field holding a
        non-string (e.g. epoch-millisecond timestamps): such a line would make
        Arrow refuse its whole group.
        """
        flagged = pc.match_substring_regex(raw, _SCREEN)
        if not pc.any(flagged).as_py():
            return cand, raw
        bad = flagged.to_numpy(zero_copy_only=False)
        slow.extend(cand[bad].tolist())
        keep = pc.invert(flagged)
        return cand[~bad], raw.filter(keep)

    def _parse_groups(
        self,
        lines: _BlockLines,
        cand: np.ndarray,
        raw: pa.Array,
        out: list[bytes | memoryview],
        slow: list[int],
    ) -> None:
        """Parse the ``cand`` lines (texts ``raw``) with Arrow; a line Arrow refuses goes to ``slow``.

        Groups are ranges of ``cand``. Arrow names the row it refused (``... in
        row N``); a group refused without one, or parsed into a different number
        of rows (two objects on one line), is bisected down to ``MIN_BISECT`` lines.

        Bisection stops (the rest goes to ``slow``) once Arrow has been given
        ``MAX_PARSE_FACTOR`` times the candidates: a block full of bad lines costs
        at most that much parsing on top of the per-line path.
        """
        stack = [(0, len(cand))]
        parts: list[tuple[int, int, pa.Table]] = []
        budget = MAX_PARSE_FACTOR * len(cand)
        failures = 0
        while stack:
            lo, hi = stack.pop()
            size = hi - lo
            if budget < size or failures > MAX_REFUSALS:
                # a file full of lines Arrow refuses: the per-line path is cheaper for it
                self.arrow_off = True
                slow.extend(cand[lo:hi].tolist())
                continue
            budget -= size
            group = raw.slice(lo, size)
            buf = _values(group)
            table = None
            try:
                table = pj.read_json(
                    pa.BufferReader(buf),
                    read_options=pj.ReadOptions(use_threads=False, block_size=max(len(buf) + 1, 1 << 16)),
                    parse_options=_PARSE,
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                bad_row = _ERROR_ROW_RE.search(str(exc))
                row = int(bad_row.group(1)) if bad_row else -1
                failures += 1
                if 0 <= row < size:
                    # Arrow names the first row it refused: that line goes to the per-line
                    # path, the lines before and after are parsed again without it
                    # (the rest in pieces: another bad line there costs a re-parse of one piece)
                    slow.append(int(cand[lo + row]))
                    stack.extend((k, min(k + RETRY_PIECE, hi)) for k in range(lo + row + 1, hi, RETRY_PIECE))
                    if row:
                        stack.append((lo, lo + row))
                    continue
                table = None
            if table is None or table.num_rows != size:
                if size <= MIN_BISECT:
                    slow.extend(cand[lo:hi].tolist())
                else:
                    half = lo + size // 2
                    stack.append((half, hi))
                    stack.append((lo, half))
                continue
            parts.append((lo, hi, table))
        if not parts:
            return
        # one conversion per block (its fixed cost is ~1 ms), over all the groups Arrow parsed
        if len(parts) == 1:
            lo, hi, table = parts[0]
            group, group_raw = cand[lo:hi], raw.slice(lo, hi - lo)
        else:
            parts.sort(key=lambda part: part[0])
            group = np.concatenate([cand[lo:hi] for lo, hi, _ in parts])
            group_raw = pa.concat_arrays([raw.slice(lo, hi - lo) for lo, hi, _ in parts])
            table = pa.concat_tables([part_table for _, _, part_table in parts])
        self._convert(lines, group, group_raw, table, out, slow)

    def _convert(
        self,
        lines: _BlockLines,
        group: np.ndarray,
        raw: pa.Array,
        table: pa.Table,
        out: list[bytes | memoryview],
        slow: list[int],
    ) -> None:
        """Check the parsed rows; write the sure ones as COPY text, send the rest to ``slow``.

        :param lines: the block.
        :param group: the block's line index of each parsed row.
        :param raw: each row's original line, WITH its ``\\n``.
        :param table: Arrow's parse of ``raw``.
        :param out: receives the COPY text.
        :param slow: receives the block's line indexes of the rows not sent.
        """
        col = {f: _array(table.column(f)) for f in FIELDS}
        mask, path = _sure_rows(col, raw, self._window)
        client, privacy, gdpr, gdpr_no_ip = self._attribute(col["site_id"], col["ip_address"], mask)
        if self._erased is not None:
            mask, gdpr, gdpr_no_ip = self._without_erased(mask, client, col["visitor_id"], gdpr, gdpr_no_ip)
        if pc.any(gdpr_no_ip).as_py():
            mask = _without_hidden_ips(mask, gdpr_no_ip, raw)
        n_fast = pc.sum(mask).as_py() or 0
        emit = None  # None: every row; else a numpy mask of the rows to send
        if n_fast < len(group):
            emit = mask.to_numpy(zero_copy_only=False)
            slow.extend(group[~emit].tolist())
        if not n_fast:
            return
        cols = {
            **col,
            "raw_event_data": raw,
            "path": path,
            "client_id": client,
            "privacy_level": privacy,
            "line": pa.array(group, pa.int64()),
        }
        if not pc.any(gdpr).as_py():
            out.append(self._emit(cols, emit, lines.specials, lines.count))
            return
        self._emit_with_gdpr(lines, cols, emit, gdpr, out, slow)

    def _attribute(
        self, site: pa.Array, ip: pa.Array, mask: pa.Array
    ) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
        """Attribute each row to its client; each distinct site is matched once.

        :param site: the rows' ``site_id``.
        :param ip: the rows' ``ip_address``.
        :param mask: the rows sent by the fast path.
        :return: ``(client_id, privacy_level, gdpr, gdpr_no_ip)``: client ids (null:
            unattributed), privacy levels (null: no site), which sent rows are a GDPR
            client's with an IP, and which a GDPR client's without one.
        """
        encoded = pc.dictionary_encode(site)
        owners = [self._matcher.match(s) for s in encoded.dictionary.to_pylist()]
        pos = encoded.indices
        client = pc.take(pa.array([o.client_id or None for o in owners], pa.string()), pos)
        privacy = pc.take(pa.array([o.privacy_level for o in owners], pa.string()), pos)
        # (a row without a site has no owner, so a null privacy level: not a GDPR row)
        sent_gdpr = pc.fill_null(pc.and_kleene(mask, pc.equal(privacy, _GDPR)), _FALSE)
        gdpr = pc.and_(sent_gdpr, pc.is_valid(ip))
        return client, privacy, gdpr, pc.and_(sent_gdpr, pc.is_null(ip))

    def _without_erased(
        self, mask: pa.Array, client: pa.Array, visitor: pa.Array, gdpr: pa.Array, gdpr_no_ip: pa.Array
    ) -> tuple[pa.Array, pa.Array, pa.Array]:
        """``mask`` (and the GDPR masks) without the rows of a (client, visitor) that has a tombstone.

        Those rows take the per-line path, which drops the ones from before the erasure
        (the decision is made in one place, ``RowBuilder``). Only rows of a client with a
        tombstone are looked at; each distinct (client, visitor) is hashed once.

        :param mask: the rows sent by the fast path.
        :param client: the rows' client ids (null: unattributed).
        :param visitor: the rows' ``visitor_id``.
        :param gdpr: the sent rows that are a GDPR client's with an IP.
        :param gdpr_no_ip: the sent rows that are a GDPR client's without one.
        """
        assert self._erased is not None
        clients = pa.array(sorted(self._erased.clients), pa.string())
        concerned = pc.fill_null(
            pc.and_kleene(mask, pc.and_(pc.is_in(client, value_set=clients), pc.is_valid(visitor))), _FALSE
        )
        if not pc.any(concerned).as_py():
            return mask, gdpr, gdpr_no_ip
        at = np.flatnonzero(concerned.to_numpy(zero_copy_only=False))
        taken = pa.array(at)
        pairs = pc.binary_join_element_wise(client.take(taken), visitor.take(taken), _DIGEST_SEPARATOR)
        hits = self._erased.matching_keys(pc.unique(pairs).to_pylist())
        if not hits:
            return mask, gdpr, gdpr_no_ip
        hit = pc.is_in(pairs, value_set=pa.array(hits, pa.string())).to_numpy(zero_copy_only=False)
        keep = np.ones(len(mask), bool)
        keep[at[hit]] = False
        kept = pa.array(keep)
        return pc.and_(mask, kept), pc.and_(gdpr, kept), pc.and_(gdpr_no_ip, kept)

    def _emit_with_gdpr(
        self,
        lines: _BlockLines,
        cols: dict[str, pa.Array],
        emit: np.ndarray | None,
        gdpr: pa.Array,
        out: list[bytes | memoryview],
        slow: list[int],
    ) -> None:
        """Write the sent rows of a group holding GDPR rows with an IP: plain rows, then edited GDPR rows.

        GDPR rows get their own COPY join, over the same full-length columns with their
        text and address edited; each join skips the other rows (a null separator): no
        column is filtered apart. A GDPR row :meth:`_protect` cannot edit goes to ``slow``.

        :param lines: the block.
        :param cols: the group's columns (see :meth:`_emit`).
        :param emit: the rows to send (numpy bool; None: all).
        :param gdpr: which sent rows are a GDPR client's with an IP.
        :param out: receives the COPY text.
        :param slow: receives the block's line indexes of the rows not sent.
        """
        gdpr_rows = gdpr.to_numpy(zero_copy_only=False)
        plain = ~gdpr_rows if emit is None else emit & ~gdpr_rows
        if plain.any():
            out.append(self._emit(cols, plain, lines.specials, lines.count))
        edited = self._protect(cols, gdpr_rows, slow)
        if edited is not None:
            rows, edited_raw, edited_ip = edited
            at = pa.array(rows)
            nothing = pa.nulls(len(gdpr_rows), pa.string())
            gdpr_cols = {
                **cols,
                "raw_event_data": pc.replace_with_mask(nothing, at, edited_raw),
                "ip_address": pc.replace_with_mask(nothing, at, edited_ip),
            }
            out.append(self._emit(gdpr_cols, rows, lines.specials, lines.count))

    def _protect(
        self, cols: dict[str, pa.Array], gdpr: np.ndarray, slow: list[int]
    ) -> tuple[np.ndarray, pa.Array, pa.Array] | None:
        """Apply the GDPR treatment to the ``gdpr`` rows of ``cols``, as ``IpProtector.protect_text``.

        The same text edit, in Arrow: the ``ip_address`` value replaced by the
        truncated address, the pseudonym member added before the closing brace.
        Rows whose text is not ``editable_text``, or that spell the member with
        spaces (``"ip_address" : "..."``), go to ``slow`` (the per-line path
        edits or re-serialises them). Each distinct address is treated once.

        :param gdpr: which rows are a GDPR client's with an IP (numpy bool).
        :return: ``(rows, texts, addresses)``: a numpy mask of the rows edited, and
            their edited ``raw_event_data`` and ``ip_address`` (in row order); None
            when every one of them went to ``slow``.
        """
        sub = _filter(
            {"raw": cols["raw_event_data"], "ip": cols["ip_address"], "line": cols["line"]}, pa.array(gdpr)
        )
        sub["row"] = pa.array(np.flatnonzero(gdpr))
        edited = self._protect_rows(sub, slow)
        if edited is None:
            return None
        rows = np.zeros(len(gdpr), bool)
        rows[edited["row"].to_numpy()] = True
        return rows, edited["raw"], edited["ip"]

    def _protect_rows(self, sub: dict[str, pa.Array], slow: list[int]) -> dict[str, pa.Array] | None:
        """The edit of :meth:`_protect` on the GDPR rows alone (columns raw, ip, line, row).

        :return: the edited rows (``raw`` and ``ip`` replaced), or None when none is left.
        """
        # head | "ip_address":" | value | " | tail by two plain splits (a capturing regex over
        # the whole line costs ~5 us a row)
        around = pc.split_pattern(sub["raw"], _IP_MEMBER_OPEN, max_splits=1)
        sub = _keep({**sub, "around": around}, pc.equal(pc.list_value_length(around), 2), slow)
        if sub is None:
            return None
        # the address must be the line's one string that may be an IP literal (the per-line
        # path treats the others)
        two = pc.match_substring_regex(sub["raw"], TWO_IP_VALUES_PATTERN)
        if pc.any(two).as_py():
            sub = _keep(sub, pc.invert(two), slow)
            if sub is None:
                return None
        # editable_text, row by row only when the rows' text taken together could fail it:
        # each row holds the key at least once, so as many keys as rows means once each
        raw = sub["raw"]
        text = bytes(_values(raw))
        if b"\\" in text or _PSEUDONYM_KEY_BYTES in text or text.count(_IP_KEY_BYTES) != len(raw):
            editable = pc.and_(
                pc.and_(
                    pc.equal(pc.count_substring(raw, IP_KEY_TEXT), 1),
                    pc.invert(pc.match_substring(raw, PSEUDONYM_KEY_TEXT)),
                ),
                pc.invert(pc.match_substring(raw, "\\")),
            )
            sub = _keep(sub, editable, slow)
            if sub is None:
                return None
        around = sub.pop("around")
        after = pc.split_pattern(pc.list_element(around, 1), '"', max_splits=1)
        head, value, tail = pc.list_element(around, 0), pc.list_element(after, 0), pc.list_element(after, 1)
        # the text value is the parsed one (no backslash in the line): checked all the same
        sub = _keep({**sub, "head": head, "tail": tail}, pc.equal(value, sub["ip"]), slow)
        if sub is None:
            return None
        ip, head, tail = sub["ip"], sub.pop("head"), sub.pop("tail")
        addresses = pc.unique(ip)
        truncated, member = self._treat_addresses(addresses)
        at = pc.index_in(ip, value_set=addresses)
        sub["ip"] = truncated = pc.take(truncated, at)
        sub["raw"] = pc.binary_join_element_wise(
            head,
            _IP_MEMBER_OPEN_SCALAR,
            truncated,
            _QUOTE,
            pc.utf8_slice_codeunits(tail, 0, -2),  # after the closing quote, without the last "}\n"
            pc.take(member, at),
            _CLOSE_LINE,
            _EMPTY,
        )
        return sub

    def _treat_addresses(self, addresses: pa.Array) -> tuple[pa.Array, pa.Array]:
        """``IpProtector.treat`` of distinct addresses: (truncated addresses, pseudonym members).

        The fast path's IPv4 is canonical dotted (``_IP``): it is truncated in Arrow
        and only its HMAC is computed in Python; IPv6 (the full 8-group form, whose
        canonical text is the compressed one) goes through ``treat``. A member is
        empty where the address was already truncated.
        """
        protector = self._ip_protector()
        texts = addresses.to_pylist()
        v4 = pc.match_substring(addresses, ".").to_numpy(zero_copy_only=False)
        truncated = pc.replace_substring_regex(addresses, _LAST_OCTET, _ZERO_OCTET)
        already = pc.equal(truncated, addresses)
        if v4.all():
            pseudonyms = protector.pseudonyms(texts)
        else:
            four, six = np.flatnonzero(v4).tolist(), np.flatnonzero(~v4).tolist()
            pseudonyms = texts[:]
            for i, pseudonym in zip(four, protector.pseudonyms([texts[i] for i in four]), strict=True):
                pseudonyms[i] = pseudonym
            treated = [protector.treat(texts[i]) for i in six]
            for i, (_, pseudonym, _) in zip(six, treated, strict=True):
                pseudonyms[i] = pseudonym
            # IPv6 rows of truncated / already: treat()'s, in row order (replace_with_mask's order)
            is_six = pa.array(~v4)
            six_truncated = pa.array([t for t, _, _ in treated], pa.string())
            truncated = pc.replace_with_mask(truncated, is_six, six_truncated)
            already = pc.replace_with_mask(already, is_six, pa.array([a for _, _, a in treated], pa.bool_()))
        members = pc.binary_join_element_wise(
            _PSEUDONYM_OPEN, pa.array(pseudonyms, pa.string()), _QUOTE, _EMPTY
        )
        return truncated, pc.if_else(already, _EMPTY, members)

    def _emit(
        self, cols: dict[str, pa.Array], rows: np.ndarray | None, specials: bool, block_lines: int
    ) -> memoryview:
        """Count the chosen rows of ``cols`` and return their COPY text.

        :param cols: the columns (``line``: index in the block; ``raw_event_data``:
            the JSON text WITH its ``\\n``).
        :param rows: which rows to send (numpy bool; None: all). The others are
            left out of the join by a null separator, not filtered apart.
        :param specials: the block holds a backslash, tab or CR (values need COPY escaping).
        :param block_lines: lines in the block (to number them).
        """
        event_type, session, visitor = cols["event_type"], cols["session_id"], cols["visitor_id"]
        url, path, agent, batch, raw = (
            cols["url"],
            cols["path"],
            cols["user_agent"],
            cols["batch_id"],
            cols["raw_event_data"],
        )
        if specials:
            # a JSON escape (or a raw tab / CR between tokens): decoded values may hold COPY specials
            texts = [_escape(a) for a in (event_type, session, visitor, url, path, agent, batch)]
            event_type, session, visitor, url, path, agent, batch = texts
            raw = pc.binary_join_element_wise(
                _escape(pc.utf8_slice_codeunits(raw, 0, -1)), _NEWLINE_TEXT, _EMPTY
            )
        if rows is None:
            separator, chosen, lines = _TAB, cols, cols["line"].to_numpy()
        else:
            take = pa.array(rows)
            separator = pc.if_else(take, _TAB, _NULL_TEXT)  # null: the row's join is null, no bytes
            chosen = {k: cols[k].filter(take) for k in ("batch_id", "client_id")}
            lines = cols["line"].to_numpy()[rows]

        # counters, as RowBuilder._row keeps them
        with_batch = pc.drop_null(chosen["batch_id"])
        if len(with_batch):
            self.rows_with_batch += len(with_batch)
            self.batch_ids.update(pc.unique(with_batch).to_pylist())
            batch = pc.fill_null(batch, self._batch_scalar)
        else:
            batch = self._batch_scalar
        # null: unattributed ("" in the counters, as RowBuilder keeps them)
        for item in pc.value_counts(chosen["client_id"]).to_pylist():
            key = item["values"] or ""
            self.per_client[key] = self.per_client.get(key, 0) + item["counts"]
        self.rows += len(lines)
        first_no = self.line_no - block_lines + 1
        self.copy_line_to_source.frombytes((lines + first_no).tobytes())

        joined = pc.binary_join_element_wise(
            cols["event_id"],
            event_type,
            session,
            visitor,
            cols["site_id"],
            cols["timestamp"],
            url,
            path,
            agent,
            cols["ip_address"],
            cols["client_id"],
            batch,
            cols["privacy_level"],
            self._file_id_scalar,
            raw,
            separator,
            options=_JOIN_COPY,
        )
        return _values(joined)


def _sure_rows(
    col: dict[str, pa.Array], raw: pa.Array, window: tuple[pa.Scalar, pa.Scalar] | None
) -> tuple[pa.Array, pa.Array]:
    """Which parsed rows pass every contract §2 rule AND need no transformation (Kleene logic).

    A required field that is missing makes its check null, and the one
    ``fill_null`` at the end turns null into "not sure"; optional fields never
    yield null. Byte lengths bound character lengths: a multi-byte value near a
    limit is simply not sure.

    :param col: the parsed columns (:data:`FIELDS`).
    :param raw: each row's original line, WITH its ``\\n``.
    :param window: the first and last instant ``timestamp`` may hold (None: any).
    :return: ``(mask, path)``: the sure rows (boolean, no nulls), and the ``path``
        column with the path derived from ``url`` where it is absent
        (``validation.derive_path``).
    """
    event_type, path, ip, batch = col["event_type"], col["path"], col["ip_address"], col["batch_id"]
    url, site = col["url"], col["site_id"]
    et_len = pc.utf8_length(event_type)
    optional_len = pc.max_element_wise(
        pc.binary_length(col["session_id"]),
        pc.binary_length(col["visitor_id"]),
        pc.binary_length(batch),
        _ZERO,
    )
    timestamp = col["timestamp"]
    timestamp_ok = pc.match_substring_regex(timestamp, _TIMESTAMP)
    checks = [
        pc.match_substring_regex(col["event_id"], _UUID),
        timestamp_ok,
        pc.greater_equal(et_len, _ONE),
        pc.less_equal(et_len, _MAX_EVENT_TYPE),
        pc.match_substring_regex(site, _SITE),  # ASCII: bytes are characters
        pc.less_equal(pc.binary_length(site), _MAX_SITE_ID),
        pc.less_equal(optional_len, _MAX_ID_LEN),
        pc.less_equal(pc.max_element_wise(pc.binary_length(path), _ZERO), _MAX_PATH),
        pc.or_kleene(pc.is_null(ip), pc.match_substring_regex(ip, _IP)),
    ]
    if window is not None:
        # the instant, for the rows whose text is a timestamp of the pattern (the others are
        # not sure anyway); Arrow reads the offset as Python's fromisoformat does
        instant = pc.cast(pc.if_else(pc.fill_null(timestamp_ok, _FALSE), timestamp, _NULL_TEXT), _INSTANT)
        checks.append(pc.and_kleene(pc.greater_equal(instant, window[0]), pc.less_equal(instant, window[1])))
    long_line = pc.greater_equal(pc.binary_length(raw), _LONG_LINE)
    if pc.any(long_line).as_py():
        deep = pc.greater_equal(
            pc.add(pc.count_substring(raw, "["), pc.count_substring(raw, "{")), MAX_BRACKETS
        )
        checks.append(pc.invert(pc.and_(long_line, deep)))
    # path derived from url where absent (validation.derive_path)
    derive = pc.and_(pc.is_null(path), pc.is_valid(url))
    if pc.any(derive).as_py():
        derived = pc.struct_field(pc.extract_regex(url, _URL_PATH), [0])  # null: no match
        checks.append(pc.or_(pc.invert(derive), pc.is_valid(derived)))
        derived = pc.utf8_slice_codeunits(derived, 0, MAX_PATH)
        derived = pc.if_else(pc.equal(derived, _EMPTY), _NULL_TEXT, derived)
        path = pc.if_else(derive, derived, path)
    mask = checks[0]
    for check in checks[1:]:
        mask = pc.and_kleene(mask, check)
    return pc.fill_null(mask, _FALSE), path


class _BlockLines:
    """The lines of one NDJSON block as offsets into one buffer (no Python object per line).

    :param data: the block (lines joined by ``\\n``, none after the last).
    """

    def __init__(self, data: bytes) -> None:
        #: the block with a ``\\n`` after every line, the last one included
        self.data = data + b"\n"
        view = np.frombuffer(self.data, np.uint8)
        ends = np.flatnonzero(view == _NEWLINE)
        self.count = len(ends)
        large = len(self.data) >= 1 << 31
        self.offsets = np.empty(self.count + 1, np.int64 if large else np.int32)
        self.offsets[0] = 0
        self.offsets[1:] = ends + 1
        #: a backslash, tab or CR somewhere: decoded values may need COPY escaping
        self.specials = b"\\" in data or b"\t" in data or b"\r" in data
        #: every line WITH its ``\\n``, over ``data`` (no copy)
        self.array = pa.Array.from_buffers(
            pa.large_string() if large else pa.string(),
            self.count,
            [None, pa.py_buffer(self.offsets), pa.py_buffer(self.data)],
        )

    def candidates(self, skip: Iterable[int]) -> np.ndarray:
        """Indexes of the lines that may be one plain JSON object (start ``{``, end ``}``).

        :param skip: indexes of lines that must not be candidates.
        """
        view = np.frombuffer(self.data, np.uint8)
        starts, ends = self.offsets[:-1], self.offsets[1:] - 1  # ends: each line's "\n"
        ok = (ends > starts) & (view[starts] == _OPEN) & (view[ends - 1] == _CLOSE)
        skipped = [k for k in skip if 0 <= k < self.count]
        if skipped:
            ok[skipped] = False
        return np.flatnonzero(ok)

    def take(self, idx: np.ndarray) -> pa.Array:
        """The lines ``idx`` (sorted), each with its ``\\n``."""
        return self.array if len(idx) == self.count else self.array.take(pa.array(idx))

    def text(self, i: int) -> str:
        """Line ``i``, decoded, without its ``\\n``."""
        return self.data[self.offsets[i] : self.offsets[i + 1] - 1].decode("utf-8")


def _without_hidden_ips(mask: pa.Array, gdpr_no_ip: pa.Array, raw: pa.Array) -> pa.Array:
    """``mask`` without the GDPR rows that have no top-level IP but may hold one elsewhere.

    Such a row (a string that may be an IP literal, or an escape that could spell one)
    takes the per-line path, which treats it (contract §6.3).

    :param mask: the rows sent by the fast path.
    :param gdpr_no_ip: which of them are a GDPR client's without a top-level IP.
    :param raw: each row's original line.
    """
    at = np.flatnonzero(gdpr_no_ip.to_numpy(zero_copy_only=False))
    texts = raw.take(pa.array(at))
    hidden = pc.or_(pc.match_substring_regex(texts, IP_VALUE_PATTERN), pc.match_substring(texts, "\\"))
    hidden_at = at[hidden.to_numpy(zero_copy_only=False)]
    if not len(hidden_at):
        return mask
    keep = np.ones(len(mask), bool)
    keep[hidden_at] = False
    return pc.and_(mask, pa.array(keep))


def _keep(cols: dict[str, pa.Array], mask: pa.Array, slow: list[int]) -> dict[str, pa.Array] | None:
    """The rows where ``mask`` holds (null: does not); the others' lines go to ``slow``.

    :return: the kept rows' columns, or None when no row is kept.
    """
    mask = pc.fill_null(mask, False)
    if pc.all(mask).as_py():
        return cols
    slow.extend(cols["line"].filter(pc.invert(mask)).to_pylist())
    if not pc.any(mask).as_py():
        return None
    return _filter(cols, mask)


def _filter(cols: dict[str, pa.Array], mask: pa.Array) -> dict[str, pa.Array]:
    """The rows of every column where ``mask`` is true (one C call for all of them)."""
    names = list(cols)
    batch = pa.RecordBatch.from_arrays([cols[k] for k in names], names=names).filter(mask)
    return {k: batch.column(i) for i, k in enumerate(names)}


def _values(arr: pa.Array) -> memoryview:
    """The concatenated values of a (large) string array, without copying them."""
    offsets, data = arr.buffers()[1], arr.buffers()[2]
    ends = memoryview(offsets).cast("q" if pa.types.is_large_string(arr.type) else "i")
    return memoryview(data)[ends[arr.offset] : ends[arr.offset + len(arr)]]
