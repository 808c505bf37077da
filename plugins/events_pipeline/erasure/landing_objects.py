"""Remove requested visitors' lines from objects of the landing bucket, in the object's own format.

Three kinds of objects hold raw events (contract §2.1):

- ``processed/<...>/<name>``: the landing file as the collector sent it - NDJSON,
  gzip NDJSON (several members accepted) or Parquet, by the end of its name;
- ``rejected/<...>.rejected.ndjson``: one ``{"line", "reason", "raw"}`` object per
  rejected line, the event's original text in ``raw``;
- ``quarantine/<...>/<name>``: a file that could not be read as a whole, and its
  ``<name>.error.json`` report.

:func:`purge_landing_object` rewrites an object without the lines (rows) that belong
to a request (:class:`~events_pipeline.erasure.matching.EventMatcher`): every other
line keeps its bytes (a gzip object is compressed again, a Parquet object written
again with its schema). An object with nothing else left is deleted. A quarantined
file that cannot be read line by line (corrupt gzip or Parquet, binary junk) but
contains a visitor's id is deleted whole: it was never loaded, and it cannot be
loaded as it is anyway (a readable copy comes from the collector). An ``.error.json``
report naming a visitor's id gets the id replaced by ``[erased]``.

On a versioned bucket the older versions of every object written or deleted here
are deleted too: they hold the lines being erased.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from events_pipeline.common.s3 import NO_SUCH_KEY, error_code
from events_pipeline.erasure.audit import AuditTrail
from events_pipeline.erasure.matching import EventMatcher, event_fields
from events_pipeline.ingest.landing_rewrite import (
    GZIP_ENDINGS,
    NDJSON_ENDINGS,
    PARQUET_ENDINGS,
    UnreadableObjectError,
    drop_older_versions,
    gunzip,
    parquet_keep_rows,
)

log = logging.getLogger(__name__)

__all__ = [
    "GZIP_ENDINGS",
    "NDJSON_ENDINGS",
    "PARQUET_ENDINGS",
    "LandingPurge",
    "UnreadableObjectError",
    "drop_older_versions",
    "filter_lines",
    "filter_parquet_rows",
    "purge_bytes",
    "purge_landing_object",
    "redact_report",
]

REJECTED_ENDING = ".rejected.ndjson"
ERROR_REPORT_ENDING = ".error.json"
#: What replaces a visitor id in an ``.error.json`` report.
REDACTED = "[erased]"


@dataclass
class LandingPurge:
    """What purging one landing object did.

    :param key: the object's key.
    :param action: ``rewritten``, ``removed`` or None (nothing of the requests in it).
    :param removed: lines (rows) removed per request id.
    :param lines_left: lines (rows) left in the object (0 when removed).
    :param bytes_before: the object's size before.
    :param bytes_after: its size after (0 when removed).
    :param detail: a note for the audit trail (why an object was removed whole...).
    """

    key: str
    action: str | None = None
    removed: Counter[int] = field(default_factory=Counter)
    lines_left: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    detail: str | None = None


def _split_lines(data: bytes) -> list[bytes]:
    """Split NDJSON bytes into lines, each with its own ending (the last may have none).

    :param data: the text.
    """
    return data.splitlines(keepends=True)


def filter_lines(
    data: bytes, matcher: EventMatcher, *, rejected: bool = False
) -> tuple[bytes, Counter[int], int]:
    """Remove the lines of ``data`` that belong to a request.

    :param data: NDJSON bytes (not compressed).
    :param matcher: decides which request a line belongs to.
    :param rejected: the lines are ``rejected/`` records: the event is the ``raw`` member.
    :return: ``(kept bytes, lines removed per request, non-blank lines kept)``.
    """
    removed: Counter[int] = Counter()
    kept: list[bytes] = []
    left = 0
    for line in _split_lines(data):
        if not line.strip():
            kept.append(line)
            continue
        if matcher.may_hold(line):
            text: str | bytes = line
            if rejected:
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict) and isinstance(record.get("raw"), str):
                    text = record["raw"]
            ids = matcher.requests_of(event_fields(text))
            if ids:
                removed.update(ids)
                continue
        kept.append(line)
        left += 1
    return b"".join(kept), removed, left


def _gunzip_prefix(data: bytes) -> bytes:
    """Return what can be decompressed of (possibly corrupt) gzip bytes, up to the first error.

    :param data: the object's bytes.
    """
    out = io.BytesIO()
    decompressor = zlib.decompressobj(wbits=47)  # gzip or zlib header, automatic
    for start in range(0, len(data), 1 << 16):
        try:
            out.write(decompressor.decompress(data[start : start + (1 << 16)]))
        except zlib.error:
            break
    return out.getvalue()


def filter_parquet_rows(data: bytes, matcher: EventMatcher) -> tuple[bytes | None, Counter[int], int]:
    """Remove the rows of a landing Parquet file that belong to a request.

    :param data: the object's bytes.
    :param matcher: decides which request a row belongs to (``visitor_id``, ``site_id``, ``url`` columns).
    :return: ``(new bytes or None when nothing matched, rows removed per request, rows left)``.
    :raises UnreadableObjectError: not a readable Parquet file.
    """
    removed: Counter[int] = Counter()

    def keep(table: Any) -> list[bool]:
        if "visitor_id" not in table.column_names:
            return [True] * table.num_rows
        columns = {
            name: table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
            for name in ("visitor_id", "site_id", "url")
        }
        mask = []
        for i in range(table.num_rows):
            ids = matcher.requests_of({name: values[i] for name, values in columns.items()})
            removed.update(ids)
            mask.append(not ids)
        return mask

    new, _, left = parquet_keep_rows(data, keep)
    return new, removed, left


def redact_report(data: bytes, matcher: EventMatcher) -> bytes | None:
    """Replace the requested visitors' ids inside an ``.error.json`` report's strings.

    :param data: the report's bytes.
    :param matcher: holds the visitor ids.
    :return: the new bytes, or None when no id occurs in it.
    """
    if not matcher.may_hold(data):
        return None
    try:
        report = json.loads(data)
    except ValueError:
        report = None

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            for visitor in matcher.by_visitor:
                value = value.replace(visitor, REDACTED)
            return value
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {scrub(k): scrub(v) for k, v in value.items()}
        return value

    if report is None:
        text = data.decode("utf-8", errors="replace")
        return scrub(text).encode("utf-8")
    return json.dumps(scrub(report), indent=2, ensure_ascii=False).encode("utf-8")


def _kind(key: str) -> str:
    """Return how an object is read: ``rejected``, ``report``, ``gzip``, ``parquet``, ``ndjson`` or ``other``.

    :param key: the object's key (its name's ending decides, case-insensitively, as at ingest).
    """
    name = key.lower()
    if name.endswith(REJECTED_ENDING):
        return "rejected"
    if name.endswith(ERROR_REPORT_ENDING):
        return "report"
    if name.endswith(GZIP_ENDINGS):
        return "gzip"
    if name.endswith(PARQUET_ENDINGS):
        return "parquet"
    if name.endswith(NDJSON_ENDINGS):
        return "ndjson"
    return "other"


def purge_bytes(key: str, data: bytes, matcher: EventMatcher) -> tuple[bytes | None, LandingPurge]:
    """Compute the new content of a landing object (pure: no S3).

    :param key: the object's key (decides the format).
    :param data: its bytes.
    :param matcher: decides which request a line belongs to.
    :return: ``(new bytes, outcome)``; new bytes None with action ``rewritten`` never
        happens: ``removed`` means delete, None means leave the object as it is.
    """
    outcome = LandingPurge(key=key, bytes_before=len(data))
    kind = _kind(key)
    try:
        new = _purge_by_kind(kind, data, matcher, outcome)
    except UnreadableObjectError as exc:
        new = _purge_unreadable(data, matcher, outcome, str(exc))
    if outcome.action == "rewritten" and new is not None:
        outcome.bytes_after = len(new)
    return new, outcome


def _purge_by_kind(kind: str, data: bytes, matcher: EventMatcher, outcome: LandingPurge) -> bytes | None:
    """Filter ``data`` as its kind says; fill ``outcome``; return the new bytes (None: unchanged/removed).

    :param kind: see :func:`_kind`.
    :param data: the object's bytes.
    :param matcher: decides which request a line belongs to.
    :param outcome: filled in.
    :raises UnreadableObjectError: the object cannot be read in that format.
    """
    if kind == "other":
        raise UnreadableObjectError("not a landing format (.ndjson, .jsonl, .ndjson.gz, .jsonl.gz, .parquet)")
    if kind == "report":
        new = redact_report(data, matcher)
        if new is not None:
            outcome.action, outcome.detail = "rewritten", "visitor id replaced in the error report"
        return new
    if kind == "parquet":
        new, removed, left = filter_parquet_rows(data, matcher)
        return _settle(outcome, removed, left, new)
    if kind == "gzip":
        text = gunzip(data)
        if not matcher.may_hold(text):
            return None
        kept, removed, left = filter_lines(text, matcher)
        return _settle(outcome, removed, left, gzip.compress(kept, mtime=0) if removed else None)
    if not matcher.may_hold(data):
        return None
    kept, removed, left = filter_lines(data, matcher, rejected=kind == "rejected")
    return _settle(outcome, removed, left, kept if removed else None)


def _settle(outcome: LandingPurge, removed: Counter[int], left: int, new: bytes | None) -> bytes | None:
    """Record lines removed and left; an object with nothing left is removed.

    :param outcome: filled in.
    :param removed: lines removed per request.
    :param left: non-blank lines (rows) left.
    :param new: the object's new bytes when something was removed.
    """
    outcome.lines_left = left
    if not removed:
        return None
    outcome.removed = removed
    if left == 0:
        outcome.action = "removed"
        outcome.detail = "nothing else was left in it"
        return None
    outcome.action = "rewritten"
    return new


def _purge_unreadable(data: bytes, matcher: EventMatcher, outcome: LandingPurge, why: str) -> bytes | None:
    """An object unreadable in its format: delete it whole if it holds a visitor's id, else leave it.

    Its lines (if any) are still tried one by one, so the requests it belongs to are known.

    :param data: the object's bytes.
    :param matcher: holds the visitor ids.
    :param outcome: filled in.
    :param why: why it is unreadable, for the audit trail.
    """
    text = data if matcher.may_hold(data) else _gunzip_prefix(data)
    if not matcher.may_hold(text):
        return None
    _, removed, _ = filter_lines(text, matcher)
    if not removed:  # the id occurs, but in nothing readable as an event: every request of that visitor
        for visitor, wanted in matcher.by_visitor.items():
            if visitor.encode("utf-8") in text:
                removed.update(w.request_id for w in wanted)
    outcome.removed = removed
    outcome.action = "removed"
    outcome.detail = f"unreadable as events ({why[:200]}) and holding a requested visitor id: deleted whole"
    return None


def purge_landing_object(
    s3: Any, bucket: str, key: str, matcher: EventMatcher, *, audit: AuditTrail | None = None
) -> LandingPurge | None:
    """Read one landing object, write it back without the requests' lines (or delete it).

    :param s3: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param key: the object's key.
    :param matcher: decides which request a line belongs to.
    :param audit: where the change is recorded, per request, before it is made (taken
        back when the write fails); None: not recorded.
    :return: the outcome, or None when the object no longer exists (expired meanwhile).
    :raises botocore.exceptions.ClientError: any other S3 error (the caller names the object).
    """
    from botocore.exceptions import ClientError

    try:
        got = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in NO_SUCH_KEY:
            return None
        raise
    data = got["Body"].read()
    new, outcome = purge_bytes(key, data, matcher)
    if outcome.action is None:
        return outcome
    recorded = (
        audit.record(
            dict(outcome.removed), bucket=bucket, key=key, action=outcome.action, detail=outcome.detail
        )
        if audit is not None
        else []
    )
    try:
        if outcome.action == "rewritten" and new is not None:
            put = s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=new,
                ContentType=got.get("ContentType") or "application/octet-stream",
                Metadata=got.get("Metadata") or {},
            )
            if put.get("VersionId"):  # a versioned bucket: the older versions hold the lines
                drop_older_versions(s3, bucket, key, keep_version=put["VersionId"])
        else:
            deleted = s3.delete_object(Bucket=bucket, Key=key)
            if deleted.get("DeleteMarker") or deleted.get("VersionId"):
                drop_older_versions(s3, bucket, key, keep_version=None)
    except Exception:
        if audit is not None:
            audit.forget(recorded)
        raise
    return outcome
