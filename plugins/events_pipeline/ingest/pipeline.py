"""Per-file orchestration of ingest; the ``events_ingest`` tasks call these functions.

One landing file goes through::

    claimed --(COPY + registry + counts, one txn)--> loaded --(copy, delete)--> processed
        \\--(unreadable)--> quarantined --(error.json, copy, delete)--> moved

:func:`process_claim` runs that state machine: :class:`ClaimState` names where a
claimed file stands, and one small function per state takes it a step further.
NDJSON goes through the vectorised
:class:`~events_pipeline.ingest.arrow_row_builder.FastRowBuilder`, which sends
every line it is not sure about to the per-line
:class:`~events_pipeline.ingest.row_builder.RowBuilder`.

Lines of a visitor a client had erased, from before the erasure, are dropped (counted
per file, audited per request) and the file's ``processed/`` copy is written without
them (:mod:`~events_pipeline.ingest.erased_visitors`, docs/ingest.md "Erased visitors").

Every step can be interrupted and re-run: see docs/decisions/ingest-exactly-once.md.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from events_pipeline.attribution.domains import DomainMatcher, load_domain_map
from events_pipeline.common import failpoints
from events_pipeline.common.background import BackgroundCall
from events_pipeline.common.compat import copy_error_line
from events_pipeline.common.db import as_dict, connect, load_sql
from events_pipeline.common.errors import PipelineError, SettingError
from events_pipeline.common.settings import (
    VAR_IP_HASH_SECRET,
    VAR_LANDING_BUCKET,
    Setting,
    get_setting,
    register,
)
from events_pipeline.ingest import copy_load, file_readers, landing, landing_rewrite
from events_pipeline.ingest.erased_visitors import ErasedVisitors
from events_pipeline.ingest.file_readers import (
    PARQUET,
    VAR_MAX_FILE_BYTES,
    UnreadableFileError,
    file_format,
    iter_byte_blocks,
    iter_parquet_batches,
    parquet_rows,
)
from events_pipeline.ingest.landing import Claim
from events_pipeline.ingest.row_builder import RejectSink
from events_pipeline.ingest.validation import (
    VAR_TIMESTAMP_MAX_AHEAD_HOURS,
    VAR_TIMESTAMP_MIN,
    TimestampWindow,
)
from events_pipeline.privacy.ip_treatment import check_secret

if TYPE_CHECKING:
    import psycopg

    from events_pipeline.ingest.arrow_row_builder import FastRowBuilder

log = logging.getLogger(__name__)

MAX_FILES_PER_RUN = register(
    Setting("events_ingest_max_files_per_run", 200, "most landing files one events_ingest run claims")
)
FILES_PER_TASK = register(
    Setting("events_ingest_files_per_task", 8, "landing files per mapped load_batch task")
)
LEASE_MINUTES = register(
    Setting(
        "events_ingest_lease_minutes",
        30,
        "minutes a claim on a landing file lasts before another run may take it over",
    )
)
MAX_ATTEMPTS = register(
    Setting(
        "events_ingest_max_attempts",
        5,
        "loads of one landing file that may start and not finish before it is quarantined "
        "as failing repeatedly (claims that only waited do not count)",
    )
)
MAX_FILE_BYTES = register(
    Setting(
        VAR_MAX_FILE_BYTES,
        20 << 30,
        "most bytes one landing file may hold once decompressed (one file is one transaction); "
        "a larger file is quarantined as too_large",
    )
)
MAX_FILE_ROWS = register(
    Setting(
        "events_ingest_max_file_rows",
        50_000_000,
        "most lines (Parquet: rows) one landing file may hold; a file with more is quarantined "
        "as too_many_rows",
    )
)
TIMESTAMP_MIN = register(
    Setting(
        VAR_TIMESTAMP_MIN,
        "2000-01-01T00:00:00Z",
        "earliest event timestamp accepted (ISO-8601 with offset); earlier ones are rejected",
    )
)
TIMESTAMP_MAX_AHEAD_HOURS = register(
    Setting(
        VAR_TIMESTAMP_MAX_AHEAD_HOURS,
        24,
        "hours after the load's start an event timestamp may be; later ones are rejected",
    )
)
#: Lines PostgreSQL may refuse in one file (each costs a re-read) before it is quarantined.
MAX_REFUSED_LINES = 20

# Outcomes of one file in a run.
LOADED = "loaded"
QUARANTINED = "quarantined"
MOVED_ONLY = "moved_only"
SKIPPED = "skipped"
FAILED = "failed"


@dataclass
class FileResult:
    """What happened to one landing file in this run (logged, returned as XCom).

    :param key: landing key.
    :param file_id: registry id.
    :param outcome: ``loaded``, ``quarantined``, ``moved_only``, ``skipped`` or ``failed``.
    :param rows_loaded: events committed.
    :param rows_rejected: lines written to ``rejected/``.
    :param rows_erased: lines dropped for erased visitors (neither loaded nor rejected).
    :param bytes: size of the landing object.
    :param seconds: wall time spent on the file.
    :param per_client: rows per client id (``""`` = unattributed).
    :param dest_key: where the object went.
    :param detail: reason for quarantine/skip/failure.
    """

    key: str
    file_id: int
    outcome: str
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_erased: int = 0
    bytes: int = 0
    seconds: float = 0.0
    per_client: dict[str, int] = field(default_factory=dict)
    dest_key: str | None = None
    detail: str | None = None
    #: the move still running in :func:`load_claims`'s background thread (not part of the XCom)
    move: BackgroundCall[str] | None = field(default=None, repr=False, compare=False)
    #: line numbers dropped for erased visitors: the ``processed/`` copy is written without them
    erased_line_numbers: list[int] = field(default_factory=list, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The result as the task returns it (XCom)."""
        data = asdict(replace(self, move=None, erased_line_numbers=[]))
        return {k: v for k, v in data.items() if k not in ("move", "erased_line_numbers")}


def new_token(run_id: str) -> str:
    """Return a claim token naming the worker and run (``claimed_by``).

    :param run_id: the Airflow run id (or any label).
    """
    return f"{socket.gethostname()}/{run_id}/{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- claim


def claim_files(
    run_id: str, *, max_files: int | None = None, files_per_task: int | None = None
) -> list[list[dict[str, Any]]]:
    """Prepare partitions, list ``incoming/`` and claim files; return batches for mapping.

    Expired claims (crashed loads, unfinished moves) are taken over first, then
    new objects in key order, up to ``max_files``.

    :param run_id: the Airflow run id (part of the claim token).
    :param max_files: most files to claim (default: setting ``events_ingest_max_files_per_run``).
    :param files_per_task: files per batch (default: ``events_ingest_files_per_task``).
    :return: batches of claims (dicts), balanced by bytes; empty when nothing to do.
    """
    from events_pipeline.common.partitions import ensure_partitions_around
    from events_pipeline.common.s3 import check_bucket, s3_client

    bucket = get_setting(VAR_LANDING_BUCKET)
    max_files = max_files or get_setting(MAX_FILES_PER_RUN.name)
    files_per_task = files_per_task or get_setting(FILES_PER_TASK.name)
    lease = get_setting(LEASE_MINUTES.name)
    check_settings()
    client = s3_client()
    check_bucket(client, bucket, what=f"Variable {VAR_LANDING_BUCKET}")
    token = new_token(run_id)
    with connect(autocommit=True) as conn:
        created = ensure_partitions_around(conn)
        if created:
            log.info("created partitions %s", ", ".join(created))
        claims = claim_available(conn, client, bucket, token, max_files=max_files, lease_minutes=lease)
    batches = make_batches(claims, files_per_task)
    log.info(
        "claimed %d file(s) in s3://%s/%s as %s (%d to move only, %d whose load started before); "
        "%d batch(es)",
        len(claims),
        bucket,
        landing.INCOMING,
        token,
        sum(1 for c in claims if c.status != "claimed" or c.reupload),
        sum(1 for c in claims if c.status == "claimed" and c.attempts > 0),
        len(batches),
    )
    return [[c.as_dict() for c in batch] for batch in batches]


def check_settings() -> None:
    """Fail at once (no retry, nothing claimed) when a setting every load needs is wrong.

    The IP pseudonym key (``events_ip_hash_secret``: set, and at least 32 bytes), the
    caps and the timestamp window; each error names its Variable. Called at the start
    of ``claim_files`` and of every ``load_batch``, so a configuration error never
    reaches a file (no file is quarantined because of one).

    :raises SettingError: naming the Variable at fault (an ``AirflowFailException``).
    """
    check_secret(get_setting(VAR_IP_HASH_SECRET))
    timestamp_window()
    for setting in (MAX_FILE_BYTES, MAX_FILE_ROWS):
        if get_setting(setting.name) < 1:
            raise SettingError(f"Airflow Variable {setting.name!r} must be at least 1 ({setting.help})")


def timestamp_window(now: datetime | None = None) -> TimestampWindow:
    """The plausible window of event timestamps: ``events_ingest_timestamp_min`` to now + the margin.

    :param now: the load's start (default: now).
    :raises SettingError: a Variable is not a valid value, naming it.
    """
    raw = str(get_setting(TIMESTAMP_MIN.name))
    try:
        earliest = datetime.fromisoformat(raw)
    except ValueError:
        earliest = None
    if earliest is None or earliest.tzinfo is None:
        raise SettingError(
            f"Airflow Variable {TIMESTAMP_MIN.name!r} = {raw!r} is not an ISO-8601 date-time with an "
            "offset (e.g. 2000-01-01T00:00:00Z)"
        )
    hours = get_setting(TIMESTAMP_MAX_AHEAD_HOURS.name)
    if hours < 0:
        raise SettingError(
            f"Airflow Variable {TIMESTAMP_MAX_AHEAD_HOURS.name!r} = {hours} must not be negative"
        )
    return TimestampWindow(earliest, (now or datetime.now(UTC)) + timedelta(hours=hours))


@dataclass(frozen=True)
class LoadLimits:
    """The per-file settings of a load, read once per task (each Variable read is a call).

    :param earliest: the first accepted event timestamp (``events_ingest_timestamp_min``).
    :param ahead_hours: how far after a load's start a timestamp may be.
    :param max_bytes: most (decompressed) bytes of one file.
    :param max_rows: most lines (rows) of one file.
    """

    earliest: datetime
    ahead_hours: int
    max_bytes: int
    max_rows: int

    @classmethod
    def from_settings(cls) -> LoadLimits:
        """Read the Variables (:func:`check_settings` names a wrong one)."""
        window = timestamp_window(datetime.now(UTC))
        return cls(
            window.earliest,
            get_setting(TIMESTAMP_MAX_AHEAD_HOURS.name),
            get_setting(MAX_FILE_BYTES.name),
            get_setting(MAX_FILE_ROWS.name),
        )

    def window(self) -> TimestampWindow:
        """The timestamp window of a load starting now."""
        return TimestampWindow(self.earliest, datetime.now(UTC) + timedelta(hours=self.ahead_hours))


def claim_available(
    conn: psycopg.Connection, client: Any, bucket: str, token: str, *, max_files: int, lease_minutes: int
) -> list[Claim]:
    """Claim up to ``max_files``: expired claims first, then unregistered objects.

    :param conn: an autocommit connection.
    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param token: this run's claim token.
    :param max_files: most files to claim.
    :param lease_minutes: lease length.
    """
    claims = landing.claim_stale(conn, bucket, token, limit=max_files, lease_minutes=lease_minutes)
    seen = {c.file_id for c in claims}
    for page in landing.iter_incoming(client, bucket):
        for dup in landing.already_done(conn, bucket, page, token):
            if dup.file_id not in seen and len(claims) < max_files:
                log.warning(
                    "%s (etag %s) was already %s (file_id=%d): identical re-upload, deleting it "
                    "from incoming/ without loading or copying it again",
                    dup.key,
                    dup.etag,
                    dup.status,
                    dup.file_id,
                )
                claims.append(dup)
                seen.add(dup.file_id)
        rest = page
        while rest and len(claims) < max_files:
            take = max_files - len(claims)
            chunk, rest = rest[:take], rest[take:]
            claims.extend(landing.claim_new(conn, bucket, chunk, token, lease_minutes=lease_minutes))
        if len(claims) >= max_files:
            break
    return claims


def make_batches(claims: list[Claim], files_per_task: int) -> list[list[Claim]]:
    """Split claims into ``ceil(n / files_per_task)`` batches of similar total bytes.

    :param claims: the claims.
    :param files_per_task: target files per batch.
    """
    if not claims:
        return []
    count = -(-len(claims) // max(files_per_task, 1))
    batches: list[list[Claim]] = [[] for _ in range(count)]
    sizes = [0] * count
    for claim in sorted(claims, key=lambda c: c.size_bytes or 0, reverse=True):
        i = min(range(count), key=lambda j: (sizes[j], len(batches[j])))
        batches[i].append(claim)
        sizes[i] += claim.size_bytes or 0
    return [b for b in batches if b]


# --------------------------------------------------------------------------- load


def prepare_loader_process() -> None:
    """Set up the current process for loading (a task calls it once, before its first file).

    Imports the vectorised path (pyarrow, which pulls in pandas), then moves
    every object alive at this point (Airflow, boto3, pyarrow, pandas: about
    a million) out of the cyclic garbage collector's reach with ``gc.freeze()``.
    They live as long as the process anyway, and without this every full
    collection walks them all again: ``perf`` showed ~4 % of a loader's CPU in
    the collector.
    """
    from events_pipeline.ingest import arrow_row_builder as fast_rows  # noqa: F401 - imported here so its objects are frozen too

    gc.freeze()


def load_batch(claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Load, then move, every claimed file of a batch; return one result per file.

    A file that fails for a retryable reason does not stop the others; the task
    raises at the end so Airflow retries it (files already done are skipped).

    :param claims: claims as produced by :func:`claim_files`.
    :raises PipelineError: naming every file that failed.
    """
    from events_pipeline.common.s3 import s3_client

    bucket = get_setting(VAR_LANDING_BUCKET)
    lease = get_setting(LEASE_MINUTES.name)
    max_attempts = get_setting(MAX_ATTEMPTS.name)
    check_settings()
    limits = LoadLimits.from_settings()
    client = s3_client()
    prepare_loader_process()
    with connect(autocommit=True) as conn:
        results = load_claims(
            conn,
            client,
            bucket,
            [Claim.from_dict(data) for data in claims],
            lease_minutes=lease,
            max_attempts=max_attempts,
            limits=limits,
        )
    failures = [f"{r.key} (file_id={r.file_id}): {r.detail}" for r in results if r.outcome == FAILED]
    if failures:
        raise PipelineError(f"{len(failures)} of {len(claims)} file(s) failed: " + "; ".join(failures))
    return [r.as_dict() for r in results]


def load_claims(
    conn: psycopg.Connection,
    client: Any,
    bucket: str,
    claims: list[Claim],
    *,
    lease_minutes: int,
    max_attempts: int,
    secret: Any = None,
    limits: LoadLimits | None = None,
) -> list[FileResult]:
    """:func:`process_claim` for each claim in turn, each file's move overlapping the next file's load.

    The S3 copy and delete that move a freshly loaded file to ``processed/``
    run in a background thread while this thread loads the next file; its
    registry update (``processed``) follows in this thread, on ``conn``. One
    move runs at a time: the next one starts once the previous one is finished.
    The load has committed before the move starts, so a move that fails or is
    cut short leaves the file ``loaded``: a retry moves it without loading it
    again, as after a crash between the commit and the move.

    A file that fails is logged, its error recorded in the registry, and its
    result is ``failed``; the other files go on.

    :param conn: an autocommit connection (used by this thread only).
    :param client: a boto3 S3 client (thread-safe: the mover shares it).
    :param bucket: the landing bucket.
    :param claims: the claims, in the order to load them.
    :param lease_minutes: lease length.
    :param max_attempts: claims after which a file that still fails is quarantined.
    :param secret: callable returning the IP pseudonym key (default: the Variable).
    :param limits: the per-file settings (default: read from the Variables, once).
    """
    limits = limits or LoadLimits.from_settings()
    results: list[FileResult] = []
    moving: int | None = None  # index (in claims and results) of the file whose move is running
    try:
        for claim in claims:
            result = _process_or_fail(
                conn,
                client,
                bucket,
                claim,
                lease_minutes=lease_minutes,
                max_attempts=max_attempts,
                secret=secret,
                limits=limits,
            )
            results.append(result)
            if moving is not None:  # the previous file's move ran while this one loaded
                _finish_background_move(conn, bucket, claims[moving], results, moving)
                moving = None
            if result.outcome == LOADED:  # loaded just now, still in incoming/
                result.move = _start_background_move(client, bucket, claim, result)
                moving = len(results) - 1
        if moving is not None:
            _finish_background_move(conn, bucket, claims[moving], results, moving)
            moving = None
    finally:
        if moving is not None:  # interrupted (BaseException): let the running move end first
            _wait_for_move(results[moving])
    return results


def _process_or_fail(
    conn: psycopg.Connection,
    client: Any,
    bucket: str,
    claim: Claim,
    *,
    lease_minutes: int,
    max_attempts: int,
    secret: Any,
    limits: LoadLimits,
) -> FileResult:
    """:func:`process_claim` with the move left to :func:`load_claims`; an error makes a ``failed`` result.

    :param conn: an autocommit connection.
    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param claim: the claim.
    :param lease_minutes: lease length.
    :param max_attempts: claims after which a file that still fails is quarantined.
    :param secret: callable returning the IP pseudonym key (None: the Variable).
    :param limits: the per-file settings.
    """
    try:
        return process_claim(
            conn,
            client,
            bucket,
            claim,
            lease_minutes=lease_minutes,
            max_attempts=max_attempts,
            secret=secret,
            defer_move=True,
            limits=limits,
        )
    except Exception as exc:
        log.exception("FAILED s3://%s/%s (file_id=%d): %s", bucket, claim.key, claim.file_id, _describe(exc))
        return _failed(conn, claim, exc)


def _start_background_move(client: Any, bucket: str, claim: Claim, result: FileResult) -> BackgroundCall[str]:
    """Start moving a freshly loaded file to ``result.dest_key`` in a background thread.

    :param client: a boto3 S3 client (shared with this thread).
    :param bucket: the landing bucket.
    :param claim: the file's claim.
    :param result: its ``loaded`` result, whose ``dest_key`` is set.
    :return: the running move; its :meth:`~BackgroundCall.join` gives what
        :func:`~events_pipeline.ingest.landing.move_object` returned.
    """
    assert result.dest_key is not None
    return BackgroundCall(
        partial(_move_to_processed, client, bucket, claim, result.dest_key, result.erased_line_numbers),
        name="ingest-move",
    )


def _move_to_processed(client: Any, bucket: str, claim: Claim, dest: str, erased_lines: list[int]) -> str:
    """Move a loaded file to ``processed/``: a copy, or the file written again without its erased lines.

    A file some of whose lines were dropped for erased visitors must not keep them in
    ``processed/``: it is written there without them (same format, other lines byte for
    byte; :func:`~events_pipeline.ingest.landing_rewrite.move_without_lines`).

    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param claim: the file's claim.
    :param dest: its ``processed/`` key.
    :param erased_lines: the line numbers dropped at its load (empty: a plain move).
    :return: what the move returned (``moved``, ``rewritten``, ``already_moved``...).
    """
    if not erased_lines:
        return landing.move_object(client, bucket, claim.key, dest, claim.etag, claim.size_bytes)
    return landing_rewrite.move_without_lines(client, bucket, claim.key, dest, claim.etag, erased_lines)


def _finish_background_move(
    conn: psycopg.Connection, bucket: str, claim: Claim, results: list[FileResult], index: int
) -> None:
    """Wait for the background move of ``results[index]`` and record it in the registry.

    A move that failed makes the file's result ``failed`` (logged, error recorded):
    it stays ``loaded``, and a retry moves it without loading it again.

    :param conn: the autocommit connection of :func:`load_claims`.
    :param bucket: the landing bucket.
    :param claim: the file's claim.
    :param results: the results so far (the file's result is replaced when its move failed).
    :param index: the file's index in ``results``.
    """
    result = results[index]
    assert result.move is not None
    try:
        _finish_move(conn, claim, result, result.move.join())
    except Exception as exc:
        log.exception(
            "FAILED moving s3://%s/%s (file_id=%d, loaded and committed) to processed/: %s; "
            "a retry moves it without loading it again",
            bucket,
            claim.key,
            claim.file_id,
            _describe(exc),
        )
        results[index] = _failed(conn, claim, exc)


def _wait_for_move(result: FileResult) -> None:
    """Let a background move end when :func:`load_claims` is interrupted; its outcome is not recorded.

    A move that failed leaves the file ``loaded``: the next run moves it.

    :param result: the result whose ``move`` is running.
    """
    if result.move is not None:
        with contextlib.suppress(Exception):
            result.move.join()


def _failed(conn: psycopg.Connection, claim: Claim, exc: BaseException) -> FileResult:
    """Record the error of a file that failed in the registry; return its ``failed`` result.

    :param conn: an autocommit connection.
    :param claim: the file's claim.
    :param exc: what went wrong.
    """
    detail = _describe(exc)
    _record_error(conn, claim, detail)
    return FileResult(claim.key, claim.file_id, FAILED, detail=detail)


# --------------------------------------------------------------------------- one claimed file


class ClaimState(Enum):
    """Where a claimed file stands; :func:`process_claim` runs the step of each state in turn."""

    #: an identical re-upload of a version already processed or quarantined: delete it, load nothing
    REUPLOAD = "reupload"
    #: another run took the claim over (this run's lease expired): leave the file to it
    TAKEN_OVER = "taken_over"
    #: registry ``claimed``, attempts left: load it
    TO_LOAD = "to_load"
    #: registry ``claimed`` after more than ``max_attempts`` claims: quarantine it
    FAILING_REPEATEDLY = "failing_repeatedly"
    #: loaded and committed (by this call or an earlier one), not yet moved to ``processed/``
    LOADED_NOT_MOVED = "loaded_not_moved"
    #: marked quarantined, its error report and move to ``quarantine/`` not done yet
    QUARANTINED_NOT_MOVED = "quarantined_not_moved"
    #: ``processed`` already (a retry after the move): nothing left to do
    ALREADY_DONE = "already_done"


@dataclass
class _ClaimJob:
    """What the steps of one :func:`process_claim` call share.

    :param status: the registry status read when the lease was renewed.
    :param attempts: the registry's claim count read then.
    """

    conn: psycopg.Connection
    client: Any
    bucket: str
    claim: Claim
    lease_minutes: int
    max_attempts: int
    secret: Any
    defer_move: bool
    started: float
    limits: LoadLimits | None = None
    status: str = ""
    attempts: int = 0


#: A step: takes the file out of one state; returns its next state (None: done) and its result so far.
_Step = Callable[[_ClaimJob, FileResult | None], tuple[ClaimState | None, FileResult]]


def process_claim(
    conn: psycopg.Connection,
    client: Any,
    bucket: str,
    claim: Claim,
    *,
    lease_minutes: int,
    max_attempts: int,
    secret: Any = None,
    defer_move: bool = False,
    limits: LoadLimits | None = None,
) -> FileResult:
    """Bring one claimed file to its final place (load if needed, then move).

    The file's first state comes from the claim (an identical re-upload) or from
    the registry row as this call renews its lease; the step of each state
    (:class:`ClaimState`) then runs until the file is done.

    :param conn: an autocommit connection.
    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param claim: the claim.
    :param lease_minutes: lease length.
    :param max_attempts: claims after which a file that still fails is quarantined.
    :param secret: callable returning the IP pseudonym key (default: the Variable).
    :param defer_move: leave the move of a file loaded by this call to the caller:
        its result is ``loaded`` with ``dest_key`` set while the object is still in
        ``incoming/`` (:func:`load_claims` moves it in the background and records the
        move with :func:`_finish_move`); otherwise the move happens here.
    :param limits: the per-file settings (default: read from the Variables when a load starts).
    """
    job = _ClaimJob(
        conn,
        client,
        bucket,
        claim,
        lease_minutes=lease_minutes,
        max_attempts=max_attempts,
        secret=secret,
        defer_move=defer_move,
        started=time.monotonic(),
        limits=limits,
    )
    state: ClaimState | None = ClaimState.REUPLOAD if claim.reupload else _renew_claim(job)
    result: FileResult | None = None
    while state is not None:
        state, result = _STEPS[state](job, result)
    assert result is not None
    return result


def _renew_claim(job: _ClaimJob) -> ClaimState:
    """Renew this run's lease (committed) and return the state the registry row puts the file in.

    :param job: the call's shared state (gets the row's ``status`` and ``attempts``).
    """
    claim = job.claim
    row = job.conn.execute(
        load_sql("ingest/start_load.sql"),
        {"file_id": claim.file_id, "token": claim.token, "lease_minutes": job.lease_minutes},
    ).fetchone()
    if row is None:
        return ClaimState.TAKEN_OVER
    job.status, job.attempts = row
    if job.status == "claimed":
        return ClaimState.FAILING_REPEATEDLY if job.attempts > job.max_attempts else ClaimState.TO_LOAD
    if job.status == "loaded":
        return ClaimState.LOADED_NOT_MOVED
    if job.status == "quarantined":
        return ClaimState.QUARANTINED_NOT_MOVED
    return ClaimState.ALREADY_DONE


def _move_reupload(job: _ClaimJob, _result: FileResult | None) -> tuple[None, FileResult]:
    """REUPLOAD: delete the identical re-upload from ``incoming/``; never copy it anywhere.

    The version was loaded (or quarantined) and moved already: its ``processed/`` (or
    ``quarantine/``) copy is the authoritative one. Since then an erasure may have
    rewritten that copy without a visitor's lines, or deleted it (or it expired): a
    copy of the re-upload would put the erased lines back. Its lines were handled once,
    so deleting it loses nothing. The registry row is left as it is.

    :param job: the call's shared state.
    """
    claim = job.claim
    if claim.dest_key:
        handled = claim.dest_key
    elif claim.status == "processed":
        handled = landing.processed_key(claim.key, claim.file_id)
    else:
        handled = landing.quarantine_key(claim.key)
    how = landing_rewrite.delete_version(job.client, job.bucket, claim.key, claim.etag)
    copy = "still there" if landing.object_exists(job.client, job.bucket, handled) else "gone"
    log.warning(
        "%s re-uploaded %s (etag %s): identical to file_id=%d, already %s; its copy %s is %s and "
        "stays authoritative (not overwritten or re-created, so lines an erasure removed stay "
        "removed); nothing loaded",
        "deleted" if how == "deleted" else f"did not delete ({how})",
        claim.key,
        claim.etag,
        claim.file_id,
        claim.status,
        handled,
        copy,
    )
    detail = f"identical re-upload deleted ({how}); {handled} {copy}, not overwritten"
    return None, FileResult(claim.key, claim.file_id, MOVED_ONLY, detail=detail, bytes=0)


def _skip_taken_over(job: _ClaimJob, _result: FileResult | None) -> tuple[None, FileResult]:
    """TAKEN_OVER: another run holds the claim now; leave the file alone.

    :param job: the call's shared state.
    """
    claim = job.claim
    log.warning(
        "skipping %s (file_id=%d): claim %s was taken over by another run",
        claim.key,
        claim.file_id,
        claim.token,
    )
    return None, FileResult(claim.key, claim.file_id, SKIPPED, detail="claim taken over by another run")


def _load(job: _ClaimJob, _result: FileResult | None) -> tuple[ClaimState | None, FileResult]:
    """TO_LOAD: load the file (:func:`load_claimed_file`); it is then loaded, quarantined or lost.

    :param job: the call's shared state.
    """
    result = load_claimed_file(
        job.conn,
        job.client,
        job.bucket,
        job.claim,
        lease_minutes=job.lease_minutes,
        secret=job.secret,
        limits=job.limits,
    )
    return _state_after(result), result


def _quarantine_failing(job: _ClaimJob, _result: FileResult | None) -> tuple[ClaimState | None, FileResult]:
    """FAILING_REPEATEDLY: quarantine the file, naming the attempts and the last error recorded.

    :param job: the call's shared state.
    """
    info = _file_row(job.conn, job.claim.file_id)
    result = _quarantine(
        job.conn,
        job.claim,
        "repeated_failure",
        f"failed in {job.attempts - 1} attempts; last error: {info.get('error') or 'unknown'}",
        job.lease_minutes,
    )
    return _state_after(result), result


def _state_after(result: FileResult) -> ClaimState | None:
    """The state a load or quarantine by this call left the file in (None: another run won it).

    :param result: the outcome of :func:`load_claimed_file` or :func:`_quarantine`.
    """
    if result.outcome == LOADED:
        return ClaimState.LOADED_NOT_MOVED
    if result.outcome == QUARANTINED:
        return ClaimState.QUARANTINED_NOT_MOVED
    return None  # skipped: reported as it is


def _move_loaded(job: _ClaimJob, result: FileResult | None) -> tuple[None, FileResult]:
    """LOADED_NOT_MOVED: move the object to ``processed/`` and mark the registry row ``processed``.

    With ``defer_move``, a file loaded by this call is returned with its
    ``dest_key`` and left for the caller to move.

    :param job: the call's shared state.
    :param result: the ``loaded`` result of this call, or None when an earlier run or try loaded it.
    """
    claim = job.claim
    dest = landing.processed_key(claim.key, claim.file_id)
    if result is not None and job.defer_move:
        result.dest_key = dest
        result.seconds = round(time.monotonic() - job.started, 3)
        return None, result
    # an earlier run loaded it: the lines it dropped for erased visitors are in its registry row
    if result is not None:
        erased = result.erased_line_numbers
    else:
        erased = _erased_line_numbers(job.conn, claim.file_id)
    how = _move_to_processed(job.client, job.bucket, claim, dest, erased)
    _finish_move(job.conn, claim, result, how)
    if result is None:
        info = _file_row(job.conn, claim.file_id)
        log.info(
            "finished move of %s -> %s (%s; file_id=%d loaded %s rows earlier)",
            claim.key,
            dest,
            how,
            claim.file_id,
            info.get("rows_loaded"),
        )
        result = FileResult(claim.key, claim.file_id, MOVED_ONLY, dest_key=dest, detail=how)
    return None, _completed(job, result)


def _move_quarantined(job: _ClaimJob, result: FileResult | None) -> tuple[None, FileResult]:
    """QUARANTINED_NOT_MOVED: write the error report, move the object to ``quarantine/``, mark it moved.

    :param job: the call's shared state.
    :param result: the ``quarantined`` result of this call, or None when an earlier run quarantined it.
    """
    result = _finish_quarantine(job.conn, job.client, job.bucket, job.claim, result)
    return None, _completed(job, result)


def _skip_done(job: _ClaimJob, _result: FileResult | None) -> tuple[None, FileResult]:
    """ALREADY_DONE: the file reached its final place already (a retry after its move).

    :param job: the call's shared state.
    """
    result = FileResult(job.claim.key, job.claim.file_id, SKIPPED, detail=f"already {job.status}")
    return None, _completed(job, result)


def _completed(job: _ClaimJob, result: FileResult) -> FileResult:
    """Finish the result of a file brought to its final place here: earlier rows of this run, time.

    An earlier try of this same run may have committed the rows: they are
    reported, so the run's summary and its Asset event count what this run loaded.

    :param job: the call's shared state.
    :param result: the file's result (changed in place and returned).
    """
    if result.outcome in (MOVED_ONLY, SKIPPED):
        info = _file_row(job.conn, job.claim.file_id)
        loaded_before = info.get("rows_loaded") or info.get("erased_lines")
        if info.get("claimed_by") == job.claim.token and loaded_before:
            result.rows_loaded = int(info.get("rows_loaded") or 0)
            result.rows_rejected = int(info.get("rows_rejected") or 0)
            result.rows_erased = int(info.get("erased_lines") or 0)
            result.detail = f"{result.detail}; loaded by an earlier try of this run"
    result.seconds = round(time.monotonic() - job.started, 3)
    return result


#: The step of each state of :func:`process_claim`.
_STEPS: dict[ClaimState, _Step] = {
    ClaimState.REUPLOAD: _move_reupload,
    ClaimState.TAKEN_OVER: _skip_taken_over,
    ClaimState.TO_LOAD: _load,
    ClaimState.FAILING_REPEATEDLY: _quarantine_failing,
    ClaimState.LOADED_NOT_MOVED: _move_loaded,
    ClaimState.QUARANTINED_NOT_MOVED: _move_quarantined,
    ClaimState.ALREADY_DONE: _skip_done,
}


# --------------------------------------------------------------------------- load one file


class _VanishedError(PipelineError):
    """The registered version of the object is no longer in incoming/."""


class _ReplayConflictError(PipelineError):
    """Lines of a replay were loaded by another replay meanwhile (the attempt is rolled back).

    :param lines: the original line numbers already loaded.
    """

    def __init__(self, lines: set[int]) -> None:
        super().__init__(f"{len(lines)} line(s) already loaded by another replay")
        self.lines = lines


@dataclass(frozen=True)
class _FileLoad:
    """What every load attempt of one claimed file shares.

    :param fmt: the file's format (:func:`~events_pipeline.ingest.file_readers.file_format`).
    :param started: ``time.monotonic()`` when the load began (for its duration).
    :param matcher: the domain matcher, read once per file.
    :param secret: returns the IP pseudonym key.
    :param file_batch_id: ``batch_id`` of the file's events that carry none.
    :param line_id_prefix: ``bucket/key#etag`` the ids of events without one derive from
        (with the line): the file's own, or for a replay the original file's.
    :param window: the instants an event's ``timestamp`` may hold.
    :param max_bytes: most bytes the file may hold decompressed.
    :param max_rows: most lines (rows) the file may hold.
    :param replay_of: for a replay (``events_replay``), the original file's ``file_id``.
    :param erased: the erasure tombstones of the clients the file may be attributed to
        (read once per file; empty: no check).
    """

    conn: psycopg.Connection
    client: Any
    bucket: str
    claim: Claim
    fmt: str
    lease_minutes: int
    started: float
    matcher: DomainMatcher
    secret: Callable[[], str]
    file_batch_id: str
    line_id_prefix: str
    window: TimestampWindow
    max_bytes: int
    max_rows: int
    replay_of: int | None = None
    erased: ErasedVisitors = field(default_factory=ErasedVisitors)


def load_claimed_file(
    conn: psycopg.Connection,
    client: Any,
    bucket: str,
    claim: Claim,
    *,
    lease_minutes: int,
    secret: Any = None,
    limits: LoadLimits | None = None,
) -> FileResult:
    """Load one claimed file in one transaction (COPY + registry + ingest_counts).

    Lines PostgreSQL refuses (a value our validation let through) are mapped
    back to their source line, rejected, and the file is loaded again without
    them; an unreadable file is marked quarantined instead. A replay
    (``landing_files.replay_of`` set) leaves out the lines of the original file
    that a replay already loaded, and records the ones it loads (``replayed_lines``).

    :param conn: an autocommit connection.
    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param claim: a claim whose registry status is ``claimed``.
    :param lease_minutes: lease length.
    :param secret: callable returning the IP pseudonym key (default: the Variable).
    :param limits: the per-file settings (default: read from the Variables).
    :return: ``loaded``, ``quarantined`` or ``skipped`` (another loader won).
    """
    import psycopg

    limits = limits or LoadLimits.from_settings()
    started = time.monotonic()
    try:
        fmt = file_format(claim.key)
    except UnreadableFileError as exc:
        return _quarantine(conn, claim, exc.kind, exc.detail, lease_minutes)
    origin = conn.execute(load_sql("ingest/replay_origin.sql"), {"file_id": claim.file_id}).fetchone()
    identity = f"{origin[1]}/{origin[2]}#{origin[3]}" if origin else f"{bucket}/{claim.key}#{claim.etag}"
    domain_map = load_domain_map(conn)
    load = _FileLoad(
        conn,
        client,
        bucket,
        claim,
        fmt,
        lease_minutes,
        started,
        matcher=DomainMatcher(domain_map),
        secret=secret or (lambda: get_setting(VAR_IP_HASH_SECRET)),
        file_batch_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{bucket}/{claim.key}#{claim.etag}")),
        line_id_prefix=identity,
        window=limits.window(),
        max_bytes=limits.max_bytes,
        max_rows=limits.max_rows,
        replay_of=origin[0] if origin else None,
        erased=ErasedVisitors.load(conn, {owner.client_id for owner in domain_map.values()}),
    )
    rejects = RejectSink()
    # source line -> reason to reject it (PostgreSQL refused it), or None: leave it out (replayed already)
    skip_lines: dict[int, str | None] = {}
    if load.replay_of is not None:
        skip_lines.update(dict.fromkeys(_replayed_lines(conn, load.replay_of)))
    try:
        while True:
            rejects.reset()
            builder = _new_builder(load, rejects, skip_lines)
            try:
                outcome = _load_once(load, builder)
            except UnreadableFileError as exc:
                return _quarantine(conn, claim, exc.kind, exc.detail, lease_minutes, line=exc.line)
            except _VanishedError:
                return _quarantine(
                    conn,
                    claim,
                    "object_gone",
                    f"version {claim.etag} of the object was deleted or overwritten before it was "
                    "loaded; nothing of it was loaded (a newer version is registered on its own)",
                    lease_minutes,
                )
            except _ReplayConflictError as exc:
                log.warning("%s: %s; loading it again without them", claim.key, exc)
                skip_lines.update(dict.fromkeys(exc.lines))
                continue
            except (psycopg.errors.DataError, psycopg.errors.CheckViolation) as exc:
                # a value our rules let through but PostgreSQL refuses (a type or a CHECK)
                refused = _refused_line(claim, builder, exc)
                if refused is None:
                    raise
                skip_lines[refused[0]] = refused[1]
                if sum(1 for reason in skip_lines.values() if reason is not None) > MAX_REFUSED_LINES:
                    return _quarantine_refused(conn, claim, *refused, lease_minutes)
                continue
            if outcome is None:
                log.warning("skipping %s (file_id=%d): another run loaded it", claim.key, claim.file_id)
                return FileResult(claim.key, claim.file_id, SKIPPED, detail="loaded by another run")
            return outcome
    finally:
        rejects.close()


def _replayed_lines(conn: psycopg.Connection, original_file_id: int) -> list[int]:
    """The lines of ``original_file_id`` that a replay loaded already (``replayed_lines``).

    :param conn: an open connection.
    :param original_file_id: the original file's registry id.
    """
    rows = conn.execute(load_sql("ingest/replayed_lines.sql"), {"original_file_id": original_file_id})
    return [line for (line,) in rows]


def _new_builder(load: _FileLoad, rejects: RejectSink, skip_lines: dict[int, str | None]) -> FastRowBuilder:
    """The row builder of one load attempt: the vectorised fast path, per line where it is not sure.

    :param load: the file being loaded.
    :param rejects: the reject sink (reset by the caller before each attempt).
    :param skip_lines: source lines not to convert: the reason to reject them with
        (PostgreSQL refused them), or None (a replay leaves them out: loaded already).
    """
    from events_pipeline.ingest.arrow_row_builder import FastRowBuilder  # pyarrow: imported by the task only

    return FastRowBuilder(
        load.matcher,
        file_id=load.claim.file_id,
        file_batch_id=load.file_batch_id,
        line_id_prefix=load.line_id_prefix,
        secret=load.secret,
        rejects=rejects,
        skip_lines=dict(skip_lines),
        window=load.window,
        erased=load.erased,
    )


def _refused_line(claim: Claim, builder: FastRowBuilder, exc: Any) -> tuple[int, str] | None:
    """Map a COPY row PostgreSQL refused back to its source line; return ``(line, reason)``.

    :param claim: the file's claim (for the log line).
    :param builder: the attempt's builder (its ``copy_line_to_source``).
    :param exc: the ``DataError`` or ``CheckViolation`` the COPY raised.
    :return: None when the error names no COPY row of this file (the caller re-raises it).
    """
    copy_line = copy_error_line(exc)
    if copy_line is None or copy_line >= len(builder.copy_line_to_source):
        return None
    source_line = builder.copy_line_to_source[copy_line]
    reason = f"refused by PostgreSQL: {exc.diag.message_primary or exc}"
    log.warning("%s line %d %s; loading the file again without it", claim.key, source_line, reason)
    return source_line, reason


def _quarantine_refused(
    conn: psycopg.Connection, claim: Claim, source_line: int, reason: str, lease_minutes: int
) -> FileResult:
    """Quarantine a file of which PostgreSQL refused more than :data:`MAX_REFUSED_LINES` lines.

    :param conn: an autocommit connection.
    :param claim: the file's claim.
    :param source_line: the last line refused.
    :param reason: why PostgreSQL refused it.
    :param lease_minutes: lease length.
    """
    return _quarantine(
        conn,
        claim,
        "refused_by_database",
        f"PostgreSQL refused more than {MAX_REFUSED_LINES} lines; last: line {source_line}: {reason}",
        lease_minutes,
    )


def _load_once(load: _FileLoad, builder: FastRowBuilder) -> FileResult | None:
    """One load attempt in ONE transaction: lock the claim, COPY, rejects, registry, counts; commit.

    :param load: the file being loaded.
    :param builder: a fresh builder for this attempt.
    :return: the ``loaded`` result, or None when the claim is no longer this run's
        (another loader holds or loaded the file).
    :raises UnreadableFileError: the file cannot be read (rolled back).
    :raises _VanishedError: the registered version of the object is gone (rolled back).
    :raises _ReplayConflictError: a replay's line was loaded by another replay (rolled back).
    :raises psycopg.errors.DataError: PostgreSQL refused a row (rolled back).
    """
    conn, claim = load.conn, load.claim
    with conn.transaction():
        locked = copy_load.lock_claim(conn, claim.file_id)
        if locked is None or locked[0] != "claimed" or locked[1] != claim.token:
            return None
        sent = _copy_file(load, builder)
        if load.replay_of is not None:
            _record_replayed_lines(load, builder)
        rejected_key = _upload_rejects(load, builder)
        batch_id = _batch_id(builder, load.file_batch_id)
        _mark_loaded(load, builder, batch_id, rejected_key)
        failpoints.checkpoint("before_commit", claim.key)
    failpoints.checkpoint("after_commit", claim.key)
    return _loaded_result(load, builder, batch_id, rejected_key, sent)


def _copy_file(load: _FileLoad, builder: FastRowBuilder) -> int:
    """COPY the rows of the registered version of the object into ``events_log``; return the bytes sent.

    NDJSON is streamed from S3 in byte blocks through the fast path; Parquet is
    spooled to a local file first (its reader seeks) and goes through the per-line path.
    A line longer than ``file_readers.MAX_LINE_BYTES`` is rejected on its own; a file
    over ``events_ingest_max_file_bytes`` / ``events_ingest_max_file_rows`` is unreadable.

    :param load: the file being loaded.
    :param builder: the attempt's builder.
    :raises _VanishedError: that version of the object is gone.
    :raises UnreadableFileError: unreadable, or over a cap (``too_large``, ``too_many_rows``).
    """
    claim = load.claim
    if load.fmt == PARQUET:
        if (claim.size_bytes or 0) > load.max_bytes:
            raise UnreadableFileError("too_large", _too_large(claim.size_bytes, load.max_bytes))
        with tempfile.TemporaryFile() as spool:
            if not landing.download_object(load.client, load.bucket, claim.key, claim.etag, spool):
                raise _VanishedError
            spool.seek(0)
            _check_rows(parquet_rows(spool), load.max_rows)
            spool.seek(0)
            return copy_load.copy_events(
                load.conn, (builder.record_block(rows) for rows in iter_parquet_batches(spool))
            )
    body = landing.open_object(load.client, load.bucket, claim.key, claim.etag)
    if body is None:
        raise _VanishedError

    def long_line(line: int, size: int) -> None:
        builder.skip_lines.setdefault(
            line,
            f"line is {size} bytes long, more than the {file_readers.MAX_LINE_BYTES} allowed "
            f"(raw holds its first {file_readers.LONG_LINE_RAW_BYTES} bytes)",
        )

    try:
        blocks = iter_byte_blocks(
            body, gzipped=load.fmt.endswith(".gz"), on_long_line=long_line, max_bytes=load.max_bytes
        )
        return copy_load.copy_events(load.conn, _bounded_parts(builder, blocks, load.max_rows))
    finally:
        body.close()


def _bounded_parts(
    builder: FastRowBuilder, blocks: Iterator[bytes], max_rows: int
) -> Iterator[bytes | memoryview]:
    """The COPY text of each block, failing once the file has more than ``max_rows`` lines.

    :param builder: the attempt's builder.
    :param blocks: the file's NDJSON blocks.
    :param max_rows: most lines the file may hold.
    :raises UnreadableFileError: ``too_many_rows`` (the load is rolled back).
    """
    for block in blocks:
        yield from builder.ndjson_bytes_parts(block)
        _check_rows(builder.line_no, max_rows)


def _check_rows(rows: int, max_rows: int) -> None:
    """Refuse a file of more than ``max_rows`` lines (rows), naming the Variable.

    :param rows: lines (rows) read so far.
    :param max_rows: the cap.
    :raises UnreadableFileError: ``too_many_rows``.
    """
    if rows > max_rows:
        raise UnreadableFileError(
            "too_many_rows",
            f"the file holds more than {max_rows} lines (rows); Variable {MAX_FILE_ROWS.name} bounds "
            "one file, which is loaded in one transaction: split it",
        )


def _too_large(size: int | None, max_bytes: int) -> str:
    return (
        f"the file holds {size} bytes, more than {max_bytes}; Variable {VAR_MAX_FILE_BYTES} bounds "
        "one file, which is loaded in one transaction: split it"
    )


def _record_replayed_lines(load: _FileLoad, builder: FastRowBuilder) -> None:
    """Record the original lines this replay loads (same transaction); refuse lines loaded already.

    ``replayed_lines`` has one row per (original file, line): a line another replay
    loaded (committed meanwhile, or committing now: the insert waits for it) conflicts,
    and this attempt is rolled back to be loaded again without it.

    :param load: the replay being loaded.
    :param builder: the attempt's builder (``copy_line_to_source``: the lines loaded).
    :raises _ReplayConflictError: naming the lines loaded already.
    """
    lines = sorted(set(builder.copy_line_to_source[1:]))
    if not lines:
        return
    inserted = load.conn.execute(
        load_sql("ingest/record_replayed_lines.sql"),
        {"original_file_id": load.replay_of, "replay_file_id": load.claim.file_id, "lines": lines},
    ).fetchall()
    if len(inserted) != len(lines):
        raise _ReplayConflictError(set(lines) - {line for (line,) in inserted})


def _upload_rejects(load: _FileLoad, builder: FastRowBuilder) -> str | None:
    """Write the rejected lines to ``rejected/``; return their key (None: no line was rejected).

    :param load: the file being loaded.
    :param builder: the attempt's builder (its reject sink).
    """
    if not builder.rejects.count:
        return None
    key = landing.rejected_key(load.claim.key, load.claim.file_id)
    landing.put_bytes(load.client, load.bucket, key, builder.rejects.stream(), "application/x-ndjson")
    return key


def _batch_id(builder: FastRowBuilder, file_batch_id: str) -> str:
    """The file's ``batch_id``: the one its events all carry, else the file's own.

    :param builder: the attempt's builder (the events' batch ids).
    :param file_batch_id: the id derived from the file's bucket, key and ETag.
    """
    if len(builder.batch_ids) == 1 and builder.rows_with_batch == builder.rows:
        return next(iter(builder.batch_ids))
    return file_batch_id


def _mark_loaded(load: _FileLoad, builder: FastRowBuilder, batch_id: str, rejected_key: str | None) -> None:
    """Set the registry row ``loaded`` with the file's figures and insert its ``ingest_counts``.

    :param load: the file being loaded.
    :param builder: the attempt's builder (its counters).
    :param batch_id: the file's ``batch_id``.
    :param rejected_key: where the rejected lines went, if any.
    :raises PipelineError: the registry row changed under its lock (naming the key).
    """
    conn, claim = load.conn, load.claim
    updated = copy_load.mark_loaded(
        conn,
        file_id=claim.file_id,
        token=claim.token,
        batch_id=batch_id,
        rows_loaded=builder.rows,
        rows_rejected=builder.rejects.count,
        rejected_key=rejected_key,
        lines_nul_replaced=builder.nul_lines,
        lines_blank=builder.blank,
        erased_lines=builder.erased,
        erased_line_numbers=sorted(builder.erased_line_numbers) or None,
        duration_ms=int((time.monotonic() - load.started) * 1000),
        lease_minutes=load.lease_minutes,
    )
    if updated != 1:  # pragma: no cover - the row lock makes this impossible
        raise PipelineError(f"registry row of {claim.key} (file_id={claim.file_id}) changed under its lock")
    copy_load.write_ingest_counts(conn, claim.file_id, builder.per_client)
    if builder.erased_per_request:
        copy_load.audit_dropped_lines(conn, load.bucket, claim.key, builder.erased_per_request)


def _loaded_result(
    load: _FileLoad, builder: FastRowBuilder, batch_id: str, rejected_key: str | None, sent: int
) -> FileResult:
    """Log the committed load of a file and return its ``loaded`` result.

    :param load: the file loaded.
    :param builder: the attempt's builder (its counters).
    :param batch_id: the file's ``batch_id``.
    :param rejected_key: where the rejected lines went, if any.
    :param sent: bytes of COPY text sent.
    """
    claim, bucket = load.claim, load.bucket
    seconds = time.monotonic() - load.started
    result = FileResult(
        claim.key,
        claim.file_id,
        LOADED,
        rows_loaded=builder.rows,
        rows_rejected=builder.rejects.count,
        rows_erased=builder.erased,
        bytes=claim.size_bytes or 0,
        seconds=round(seconds, 3),
        per_client=dict(builder.per_client),
        detail=f"batch_id={batch_id}",
        erased_line_numbers=sorted(builder.erased_line_numbers),
    )
    if builder.erased:
        log.warning(
            "s3://%s/%s (file_id=%d): %d line(s) of erased visitors dropped, neither loaded nor "
            "rejected (erasure request(s) %s); its processed/ copy is written without them",
            bucket,
            claim.key,
            claim.file_id,
            builder.erased,
            ", ".join(f"{r}: {n} line(s)" for r, n in sorted(builder.erased_per_request.items())),
        )
    clients = ", ".join(f"{c or '(unattributed)'}={n}" for c, n in sorted(builder.per_client.items()))
    log.info(
        "loaded s3://%s/%s (file_id=%d): %d rows, %d rejected%s, %d blank, %d with NUL replaced; "
        "%.1f MB landing / %.1f MB COPY in %.2f s (%.0f events/s); per client: %s; "
        "lines via the fast path %d, per line %d",
        bucket,
        claim.key,
        claim.file_id,
        builder.rows,
        builder.rejects.count,
        f" -> s3://{bucket}/{rejected_key}" if rejected_key else "",
        builder.blank,
        builder.nul_lines,
        (claim.size_bytes or 0) / 1e6,
        sent / 1e6,
        seconds,
        builder.rows / seconds if seconds > 0 else 0.0,
        clients or "none",
        builder.fast_lines,
        builder.slow_lines,
    )
    return result


# --------------------------------------------------------------------------- quarantine & moves


def _quarantine(
    conn: psycopg.Connection,
    claim: Claim,
    kind: str,
    detail: str,
    lease_minutes: int,
    *,
    line: int | None = None,
) -> FileResult:
    """Mark a claimed file ``quarantined`` with its error (its object is moved afterwards).

    :param conn: an autocommit connection.
    :param claim: the file's claim.
    :param kind: a short machine-readable kind (``corrupt_gzip``, ``repeated_failure``...).
    :param detail: what is wrong, for a person.
    :param lease_minutes: lease length.
    :param line: the 1-based line at fault, when known.
    :return: ``quarantined``, or ``skipped`` when the claim was taken over meanwhile.
    """
    error = orjson.dumps({"kind": kind, "detail": detail, "line": line}).decode("utf-8")
    with conn.transaction():
        locked = copy_load.lock_claim(conn, claim.file_id)
        if locked is None or locked[0] != "claimed" or locked[1] != claim.token:
            return FileResult(claim.key, claim.file_id, SKIPPED, detail="claim taken over by another run")
        conn.execute(
            load_sql("ingest/mark_quarantined.sql"),
            {
                "file_id": claim.file_id,
                "token": claim.token,
                "error": error,
                "quarantine_key": landing.quarantine_key(claim.key),
                "lease_minutes": lease_minutes,
            },
        )
    log.error(
        "QUARANTINE %s (file_id=%d): %s: %s%s",
        claim.key,
        claim.file_id,
        kind,
        detail,
        f" at line {line}" if line else "",
    )
    return FileResult(claim.key, claim.file_id, QUARANTINED, bytes=claim.size_bytes or 0, detail=detail)


def _finish_quarantine(
    conn: psycopg.Connection, client: Any, bucket: str, claim: Claim, result: FileResult | None
) -> FileResult:
    """Write ``<key>.error.json`` to ``quarantine/``, move the object there and mark it moved.

    :param conn: an autocommit connection.
    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param claim: the file's claim.
    :param result: the ``quarantined`` result of this run, if it quarantined the file (gets ``dest_key``).
    """
    info = _file_row(conn, claim.file_id)
    error = info.get("error") or "{}"
    try:
        error_doc = orjson.loads(error)
    except orjson.JSONDecodeError:
        error_doc = {"kind": "error", "detail": error}
    dest = landing.quarantine_key(claim.key)
    report = {
        "bucket": bucket,
        "key": claim.key,
        "etag": claim.etag,
        "size_bytes": claim.size_bytes,
        "file_id": claim.file_id,
        "quarantine_key": dest,
        **error_doc,
        "what_to_do": "fix the file and upload it again under incoming/ (a new name or new content "
        "is a new file); see docs/ingest.md#quarantine",
    }
    landing.put_bytes(
        client,
        bucket,
        landing.error_key(claim.key),
        orjson.dumps(report, option=orjson.OPT_INDENT_2),
        "application/json",
    )
    how = landing.move_object(client, bucket, claim.key, dest, claim.etag, claim.size_bytes)
    note = None
    if how in ("replaced", "already_moved_missing_dest", "copied_newer_left"):
        note = orjson.dumps({**error_doc, "move": how}).decode("utf-8")
    _mark_moved(conn, claim, dest, note)
    if result is None:
        result = FileResult(
            claim.key, claim.file_id, QUARANTINED, detail=error_doc.get("detail"), bytes=claim.size_bytes
        )
    result.dest_key = dest
    return result


def _finish_move(conn: psycopg.Connection, claim: Claim, result: FileResult | None, how: str) -> None:
    """Record in the registry that a loaded file was moved to ``processed/``.

    :param conn: an autocommit connection.
    :param claim: the file's claim.
    :param result: the file's result from this run, if it was loaded by it (gets ``dest_key``).
    :param how: what :func:`~events_pipeline.ingest.landing.move_object` returned.
    """
    dest = landing.processed_key(claim.key, claim.file_id)
    note = None
    if how == "replaced":
        note = f"not moved: {claim.key} was overwritten by a newer version, which is loaded separately"
    elif how == "copied_newer_left":
        note = (
            f"copied to {dest}; {claim.key} was overwritten by a newer version before the delete: "
            "that version was left in incoming/ and is loaded separately"
        )
    elif how == "already_moved_missing_dest":
        note = f"{claim.key} was neither in incoming/ nor in processed/ when moving it"
    _mark_moved(conn, claim, dest, note)
    if result is not None:
        result.dest_key = dest
        result.move = None


def _mark_moved(conn: psycopg.Connection, claim: Claim, dest: str, note: str | None) -> None:
    """Set ``moved_at`` (and ``processed`` for a loaded file) on the registry row.

    :param conn: an autocommit connection.
    :param claim: the file's claim.
    :param dest: where the object went.
    :param note: a remark for ``error`` (an unusual move), if any.
    """
    with conn.transaction():
        conn.execute(
            load_sql("ingest/mark_moved.sql"), {"file_id": claim.file_id, "dest_key": dest, "note": note}
        )


def _file_row(conn: psycopg.Connection, file_id: int) -> dict[str, Any]:
    """The registry row of ``file_id`` (``get_file.sql``) as a dict; empty when there is none.

    :param conn: an open connection.
    :param file_id: the registry id.
    """
    return as_dict(conn.execute(load_sql("ingest/get_file.sql"), {"file_id": file_id})) or {}


def _erased_line_numbers(conn: psycopg.Connection, file_id: int) -> list[int]:
    """The line numbers a file's load dropped for erased visitors (registry row; empty: none).

    :param conn: an open connection.
    :param file_id: the registry id.
    """
    return list(_file_row(conn, file_id).get("erased_line_numbers") or [])


def _describe(exc: BaseException) -> str:
    """``<ExceptionType>: <message>``, the error text of logs and of the registry.

    :param exc: the exception.
    """
    return f"{type(exc).__name__}: {exc}"


def _record_error(conn: psycopg.Connection, claim: Claim, detail: str) -> None:
    """Record the error of a failed attempt in the registry row (for on-call); never raises.

    :param conn: an autocommit connection (a failed transaction still open is rolled back).
    :param claim: the file's claim.
    :param detail: the error text.
    """
    try:
        if conn.info.transaction_status != 0:  # not idle: a failed transaction is still open
            conn.rollback()
        conn.execute(
            load_sql("ingest/record_error.sql"),
            {"file_id": claim.file_id, "token": claim.token, "error": detail[:2000]},
        )
    except Exception:
        log.exception("could not record the error of %s in landing_files", claim.key)


# --------------------------------------------------------------------------- summary


def summarize(results: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Log the one-line run summary and return the totals.

    :param results: the per-batch lists returned by :func:`load_batch`.
    """
    files = [r for batch in results or [] for r in (batch or [])]
    by_outcome: dict[str, int] = {}
    for r in files:
        by_outcome[r["outcome"]] = by_outcome.get(r["outcome"], 0) + 1
    rows = sum(r["rows_loaded"] for r in files)
    rejected = sum(r["rows_rejected"] for r in files)
    erased = sum(r.get("rows_erased", 0) for r in files)
    size = sum(r["bytes"] or 0 for r in files)
    seconds = sum(r["seconds"] for r in files)
    per_client: dict[str, int] = {}
    for r in files:
        for c, n in r["per_client"].items():
            per_client[c] = per_client.get(c, 0) + n
    totals = {
        "files": len(files),
        "outcomes": by_outcome,
        "rows_loaded": rows,
        "rows_rejected": rejected,
        "rows_erased": erased,
        "bytes": size,
        "file_seconds": round(seconds, 3),
        "per_client": per_client,
        "quarantined": [r["key"] for r in files if r["outcome"] == QUARANTINED],
    }
    outcome_text = ", ".join(f"{n} {o}" for o, n in sorted(by_outcome.items())) or "nothing to do"
    log.info(
        "ingest run: %d file(s) (%s); %d rows loaded, %d rejected, %d dropped for erased visitors; "
        "%.1f MB in %.1f s of file work (%.0f events/s); unattributed %d%s",
        len(files),
        outcome_text,
        rows,
        rejected,
        erased,
        size / 1e6,
        seconds,
        rows / seconds if seconds > 0 else 0.0,
        per_client.get("", 0),
        f"; QUARANTINED: {', '.join(totals['quarantined'])}" if totals["quarantined"] else "",
    )
    return totals
