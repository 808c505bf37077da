"""Replays of bad input (DAG ``events_replay``, contract §2.8): fixed lines back through ingest.

Two kinds of input, named by the original file's registry id (``landing_files.file_id``):

- ``quarantined_file``: a quarantined file, as it is in ``quarantine/`` (the fix was on
  our side: a setting, a cap, the code) or a fixed copy put anywhere in the landing
  bucket (``fixed_key``) that keeps the original's line numbering;
- ``rejected_lines``: the rejected lines of a file (its ``rejected/`` object), all of them
  or a line range, as they are or from a fixed copy of that object (``fixed_key``, the
  same ``{"line", "reason", "raw"}`` records, ``raw`` corrected).

A replay is a new landing object under ``replay/`` registered in ``landing_files``
with ``replay_of`` = the original file, then loaded by the normal ingest path
(:func:`~events_pipeline.ingest.pipeline.process_claim`: validation, attribution,
GDPR treatment, one COPY transaction, ``rejected/``, ``processed/``). It keeps the
original's line numbers (the lines of a ``rejected_lines`` replay sit at their
original numbers, blank lines in between), so rejects, event ids derived from the
line and provenance all name the ORIGINAL line. The load records each line it
loads in ``replayed_lines`` (original file, line) and leaves out lines loaded by an
earlier replay: replaying twice loads every line once.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import orjson
from airflow.sdk.exceptions import AirflowFailException

from events_pipeline.common.db import as_dict, connect, load_sql
from events_pipeline.common.errors import PipelineError
from events_pipeline.common.run_params import ParamError
from events_pipeline.common.s3 import NO_SUCH_KEY, error_code
from events_pipeline.common.settings import VAR_LANDING_BUCKET, get_setting
from events_pipeline.ingest import landing, pipeline
from events_pipeline.ingest.file_readers import LANDING_SUFFIXES
from events_pipeline.ingest.landing import Claim

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

QUARANTINED_FILE = "quarantined_file"
REJECTED_LINES = "rejected_lines"
MODES = (REJECTED_LINES, QUARANTINED_FILE)
#: Form fields of ``events_replay`` (``dags/events_replay.py``).
MODE_PARAM, FILE_ID_PARAM, FIXED_KEY_PARAM = "mode", "file_id", "fixed_key"
FIRST_LINE_PARAM, LAST_LINE_PARAM = "first_line", "last_line"
#: Blank lines written at a time between the replayed lines of a ``rejected_lines`` replay.
_PADDING = b"\n" * (1 << 16)


class ReplayError(PipelineError, AirflowFailException):
    """A replay cannot be done as asked (the original's objects, a fixed file); not retried.

    The message names the file, the key and the line at fault.
    """


@dataclass(frozen=True)
class ReplayRequest:
    """What the trigger form asks to replay.

    :param mode: ``rejected_lines`` or ``quarantined_file``.
    :param file_id: the original file's registry id.
    :param fixed_key: a key of the landing bucket holding the fixed input (None: the original's object).
    :param first_line: first original line to replay (None: from the first).
    :param last_line: last original line to replay (None: to the last).
    """

    mode: str
    file_id: int
    fixed_key: str | None = None
    first_line: int | None = None
    last_line: int | None = None

    def wants(self, line: int) -> bool:
        """Whether original line ``line`` is in the requested range.

        :param line: a 1-based line number.
        """
        return (self.first_line is None or line >= self.first_line) and (
            self.last_line is None or line <= self.last_line
        )


def parse_params(params: Mapping[str, Any] | None) -> ReplayRequest:
    """Check the trigger form of ``events_replay``; every error names its field.

    :param params: the run's params (``context["params"]``).
    :raises ParamError: a field is missing or wrong, or fields contradict each other.
    """
    params = params or {}
    mode = params.get(MODE_PARAM) or REJECTED_LINES
    if mode not in MODES:
        raise ParamError(f"form field {MODE_PARAM!r} = {mode!r} must be one of {', '.join(MODES)}")
    file_id = _positive(params, FILE_ID_PARAM)
    if file_id is None:
        raise ParamError(f"form field {FILE_ID_PARAM!r} is required: the landing_files.file_id to replay")
    first, last = _positive(params, FIRST_LINE_PARAM), _positive(params, LAST_LINE_PARAM)
    if mode == QUARANTINED_FILE and (first is not None or last is not None):
        field = FIRST_LINE_PARAM if first is not None else LAST_LINE_PARAM
        raise ParamError(
            f"form field {field!r} is set, but a {QUARANTINED_FILE} replay takes the whole file "
            f"(empty it, or fix the file; line ranges are for {REJECTED_LINES})"
        )
    if first is not None and last is not None and last < first:
        raise ParamError(f"form field {LAST_LINE_PARAM!r} = {last} is before {FIRST_LINE_PARAM!r} = {first}")
    fixed = params.get(FIXED_KEY_PARAM) or None
    if fixed is not None:
        fixed = str(fixed).strip()
        if not fixed or fixed.startswith("/") or fixed.startswith(landing.INCOMING):
            raise ParamError(
                f"form field {FIXED_KEY_PARAM!r} = {fixed!r} must be a key of the landing bucket outside "
                f"{landing.INCOMING} (events_ingest would load it on its own), without a leading /"
            )
    return ReplayRequest(mode, file_id, fixed, first, last)


def _positive(params: Mapping[str, Any], name: str) -> int | None:
    """The form's integer ``name`` (None when empty), at least 1.

    :param params: the run's params.
    :param name: the field.
    :raises ParamError: not an integer of at least 1, naming the field.
    """
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ParamError(f"form field {name!r} = {value!r} is not a whole number") from None
    if number < 1 or (isinstance(value, float) and value != number):
        raise ParamError(f"form field {name!r} = {value!r} must be a whole number of at least 1")
    return number


def run(params: Mapping[str, Any] | None, *, run_id: str) -> dict[str, Any]:
    """Task entry point of ``events_replay``: check the form, build the replay, load it.

    Safe to retry: the replay object's key and content are derived from the run and
    the input, so a retry finds its own registry row; and lines loaded already are
    never loaded again (``replayed_lines``).

    :param params: the run's params (trigger form).
    :param run_id: the Airflow run id (names the replay object and the claim).
    :return: what was replayed (file ids, keys, rows loaded and rejected).
    :raises ParamError: a form value is wrong, naming the field (no retry).
    :raises ReplayError: the input cannot be replayed (names the object; no retry).
    """
    from events_pipeline.common.s3 import s3_client

    request = parse_params(params)
    pipeline.check_settings()
    bucket = get_setting(VAR_LANDING_BUCKET)
    lease = get_setting(pipeline.LEASE_MINUTES.name)
    max_attempts = get_setting(pipeline.MAX_ATTEMPTS.name)
    client = s3_client()
    token = f"replay/{run_id}"
    with connect(autocommit=True) as conn:
        original = _original_file(conn, request)
        tag = "r" + hashlib.sha256(f"{run_id}#{request}".encode()).hexdigest()[:12]
        if request.mode == QUARANTINED_FILE:
            key, lines = _stage_quarantined(client, bucket, original, request, tag), None
        else:
            key, lines = _stage_rejected_lines(client, bucket, original, request, tag)
        claim = _register(conn, client, bucket, key, original["root_id"], token, lease)
        pipeline.prepare_loader_process()
        result = pipeline.process_claim(
            conn, client, bucket, claim, lease_minutes=lease, max_attempts=max_attempts
        )
        row = as_dict(conn.execute(load_sql("ingest/get_file.sql"), {"file_id": claim.file_id})) or {}
        replayed = conn.execute(
            load_sql("ingest/replay_lines_loaded.sql"), {"replay_file_id": claim.file_id}
        ).fetchone()[0]
    summary = {
        "mode": request.mode,
        "original_file_id": original["root_id"],
        "replay_file_id": claim.file_id,
        "replay_key": key,
        "outcome": result.outcome,
        "status": row.get("status"),
        "lines_selected": lines,
        "rows_loaded": int(row.get("rows_loaded") or 0),
        "rows_rejected": int(row.get("rows_rejected") or 0),
        "lines_recorded": replayed,
        "rejected_key": row.get("rejected_key"),
    }
    log.info(
        "replay of file_id=%d (%s) as %s (file_id=%d): %s; %d row(s) loaded, %d rejected%s",
        original["root_id"],
        request.mode,
        key,
        claim.file_id,
        row.get("status"),
        summary["rows_loaded"],
        summary["rows_rejected"],
        f" -> s3://{bucket}/{row['rejected_key']}" if row.get("rejected_key") else "",
    )
    if row.get("status") == "quarantined":
        raise ReplayError(
            f"the replay of file_id={original['root_id']} ({key}, file_id={claim.file_id}) was "
            f"quarantined: {row.get('error')}; fix the input and replay again"
        )
    return summary


def _original_file(conn: psycopg.Connection, request: ReplayRequest) -> dict[str, Any]:
    """The registry row to replay, checked against the mode; ``root_id``: the original of a replay's.

    :param conn: an open connection.
    :param request: the form.
    :raises ParamError: no such file, or not in a state the mode can replay (names ``file_id``).
    """
    row = as_dict(conn.execute(load_sql("ingest/replay_source.sql"), {"file_id": request.file_id}))
    where = f"form field {FILE_ID_PARAM!r} = {request.file_id}"
    if row is None:
        raise ParamError(f"{where}: no landing file has that file_id (landing_files)")
    if request.mode == QUARANTINED_FILE and row["status"] != "quarantined":
        raise ParamError(f"{where} ({row['key']}) is {row['status']}, not quarantined")
    if request.mode == QUARANTINED_FILE and row["moved_at"] is None:
        raise ParamError(
            f"{where} ({row['key']}) is not in quarantine/ yet: wait for events_ingest to move it"
        )
    if request.mode == REJECTED_LINES and not (row["rows_rejected"] and row["rejected_key"]):
        raise ParamError(f"{where} ({row['key']}) has no rejected lines (status {row['status']})")
    return row


def _stage_quarantined(
    client: Any, bucket: str, original: dict[str, Any], request: ReplayRequest, tag: str
) -> str:
    """Copy the quarantined file (or its fixed copy) to its replay key; return that key.

    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param original: the original's registry row (:func:`_original_file`).
    :param request: the form.
    :param tag: this replay's folder under ``replay/``.
    :raises ReplayError: the source object is missing or has no landing format (names it).
    """
    source = request.fixed_key or original["processed_key"]
    name = source.rsplit("/", 1)[-1]
    if not name.lower().endswith(LANDING_SUFFIXES):
        field = f"form field {FIXED_KEY_PARAM!r} = " if request.fixed_key else "the quarantined object "
        raise ReplayError(
            f"{field}{source!r} has no landing format ending ({', '.join(LANDING_SUFFIXES)}): "
            "put a fixed copy with one and give it as fixed_key"
        )
    folder = _root_sub_path(original).rsplit("/", 1)[0] if "/" in _root_sub_path(original) else ""
    key = f"{landing.REPLAY}{tag}/{folder + '/' if folder else ''}{name}"
    try:
        landing.copy_object(client, bucket, source, key, None)
    except Exception as exc:
        if error_code(exc) in NO_SUCH_KEY:
            raise ReplayError(f"s3://{bucket}/{source} does not exist: nothing to replay") from None
        raise
    return key


def _stage_rejected_lines(
    client: Any, bucket: str, original: dict[str, Any], request: ReplayRequest, tag: str
) -> tuple[str, int]:
    """Write the chosen rejected lines (or their fixed copies) at their original line numbers.

    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param original: the original's registry row (:func:`_original_file`).
    :param request: the form.
    :param tag: this replay's folder under ``replay/``.
    :return: ``(replay key, lines in it)``.
    :raises ParamError: the range selects no rejected line (names the fields).
    :raises ReplayError: an object is missing, a record is malformed, or a fixed line
        was not rejected (names the key and the line).
    """
    rejected = _read_records(client, bucket, original["rejected_key"], what="the rejected-lines object")
    allowed = set(rejected)
    lines = rejected
    if request.fixed_key:
        lines = _read_records(client, bucket, request.fixed_key, what=f"form field {FIXED_KEY_PARAM!r}")
        extra = sorted(set(lines) - allowed)
        if extra:
            raise ReplayError(
                f"form field {FIXED_KEY_PARAM!r} = {request.fixed_key!r} holds line {extra[0]}, which "
                f"{original['rejected_key']} does not list as rejected: only rejected lines can be "
                "replayed (a loaded line would load twice)"
            )
    chosen = sorted(line for line in lines if request.wants(line))
    if not chosen:
        raise ParamError(
            f"form fields {FIRST_LINE_PARAM!r}..{LAST_LINE_PARAM!r} = "
            f"{request.first_line}..{request.last_line} "
            f"select none of the {len(lines)} rejected line(s) of file_id={request.file_id} "
            f"(lines {min(lines)}..{max(lines)})"
        )
    key = f"{landing.REPLAY}{tag}/{_root_sub_path(original)}.lines.ndjson.gz"
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
        _write_at_line_numbers(spool, {line: lines[line] for line in chosen})
        spool.seek(0)
        landing.put_bytes(client, bucket, key, spool, "application/gzip")
    return key, len(chosen)


def _root_sub_path(original: dict[str, Any]) -> str:
    """The sub-path of the file a replay's lines come from (the original of a replay)."""
    key = original["root_key"]
    return landing.sub_path(key) if key.startswith(landing.INCOMING) else key


def _read_records(client: Any, bucket: str, key: str, *, what: str) -> dict[int, str]:
    """Read a rejected-lines object: ``{line: raw}``.

    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param key: the object.
    :param what: how the message names the object.
    :raises ReplayError: missing, or a record is not ``{"line": n >= 1, "raw": text without newline}``.
    """
    from botocore.exceptions import ClientError

    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if error_code(exc) in NO_SUCH_KEY:
            raise ReplayError(f"{what} s3://{bucket}/{key} does not exist") from None
        raise
    records: dict[int, str] = {}
    with body:
        for n, text in enumerate(body.iter_lines(), start=1):
            if not text.strip():
                continue
            try:
                record = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise ReplayError(f"{what} s3://{bucket}/{key} record {n} is not JSON: {exc}") from None
            line, raw = (record.get("line"), record.get("raw")) if isinstance(record, dict) else (None, None)
            if type(line) is not int or line < 1 or type(raw) is not str or "\n" in raw:
                raise ReplayError(
                    f"{what} s3://{bucket}/{key} record {n} must be "
                    '{"line": <original line number>, "raw": "<the line, no newline>"}'
                )
            records[line] = raw
    return records


def _write_at_line_numbers(out: IO[bytes], lines: dict[int, str]) -> None:
    """Write gzip NDJSON with each line at its number (blank lines between; gzip without a timestamp).

    The same lines always give the same bytes (so a retry gives the same object).

    :param out: a writable binary file.
    :param lines: line number -> text, numbers increasing.
    """
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        at = 1
        for number, text in lines.items():
            gap = number - at
            while gap > 0:
                step = min(gap, len(_PADDING))
                gz.write(_PADDING[:step])
                gap -= step
            gz.write(text.encode("utf-8") + b"\n")
            at = number + 1


def _register(
    conn: psycopg.Connection,
    client: Any,
    bucket: str,
    key: str,
    original_file_id: int,
    token: str,
    lease_minutes: int,
) -> Claim:
    """Register the replay object in ``landing_files`` (``replay_of``) and claim it for this run.

    A retry of the same run finds its row (same key and ETag) and claims it again
    if it is still its own.

    :param conn: an autocommit connection.
    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param key: the replay object.
    :param original_file_id: the original file.
    :param token: this run's claim token.
    :param lease_minutes: lease length.
    """
    head = client.head_object(Bucket=bucket, Key=key)
    with conn.transaction():
        row = conn.execute(
            load_sql("ingest/register_replay.sql"),
            {
                "bucket": bucket,
                "key": key,
                "etag": head["ETag"].strip('"'),
                "size_bytes": int(head["ContentLength"]),
                "last_modified": head["LastModified"],
                "token": token,
                "lease_minutes": lease_minutes,
                "replay_of": original_file_id,
            },
        ).fetchone()
    return Claim(*row, token=token)
