"""Per-file orchestration of ingest; the ``events_ingest`` tasks call these functions.

One landing file goes through::

    claimed --(COPY + registry + counts, one txn)--> loaded --(copy, delete)--> processed
        \\--(unreadable)--> quarantined --(error.json, copy, delete)--> moved

Every step can be interrupted and re-run: see docs/decisions/ingest-exactly-once.md.
"""

from __future__ import annotations

import gc
import logging
import socket
import tempfile
import time
import uuid
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson

from events_pipeline.attribution.domains import DomainMatcher, load_domain_map
from events_pipeline.common import failpoints as ingest_faults
from events_pipeline.common.db import connect, load_sql
from events_pipeline.common.errors import PipelineError
from events_pipeline.common.settings import (
    VAR_IP_HASH_SECRET,
    VAR_LANDING_BUCKET,
    Setting,
    get_setting,
    register,
)
from events_pipeline.ingest import copy_load as loading
from events_pipeline.ingest import landing
from events_pipeline.ingest.file_readers import (
    PARQUET,
    UnreadableFileError,
    file_format,
    iter_byte_blocks,
    iter_line_blocks,
    iter_parquet_batches,
)
from events_pipeline.ingest.landing import Claim
from events_pipeline.ingest.row_builder import RejectSink, RowBuilder

if TYPE_CHECKING:
    import psycopg

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
        "claims of one landing file before it is quarantined as failing repeatedly",
    )
)
#: Lines PostgreSQL may refuse in one file (each costs a re-read) before it is quarantined.
MAX_REFUSED_LINES = 20
#: NDJSON goes through the vectorised ``fast_rows`` path (False: the per-line reference path only).
FAST_PATH = True

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
    bytes: int = 0
    seconds: float = 0.0
    per_client: dict[str, int] = field(default_factory=dict)
    dest_key: str | None = None
    detail: str | None = None
    #: the move still running in :func:`load_claims`'s background thread (not part of the XCom)
    move: Future[str] | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The result as the task returns it (XCom)."""
        return {k: v for k, v in asdict(replace(self, move=None)).items() if k != "move"}


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
        "claimed %d file(s) in s3://%s/%s as %s (%d by expired claim or move-only); %d batch(es)",
        len(claims),
        bucket,
        landing.INCOMING,
        token,
        sum(1 for c in claims if c.status != "claimed" or c.attempts > 1),
        len(batches),
    )
    return [[c.as_dict() for c in batch] for batch in batches]


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
                    "%s (etag %s) was already %s (file_id=%d): identical re-upload, moving it out "
                    "of incoming/ without loading it again",
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
) -> list[FileResult]:
    """:func:`process_claim` for each claim in turn, each file's move overlapping the next file's load.

    The S3 copy and delete that move a freshly loaded file to ``processed/``
    run in a background thread while this thread loads the next file; its
    registry update (``processed``) follows in this thread, on ``conn``. The
    load has committed before the move starts, so a move that fails or is cut
    short leaves the file ``loaded``: a retry moves it without loading it again,
    as after a crash between the commit and the move.

    A file that fails is logged, its error recorded in the registry, and its
    result is ``failed``; the other files go on.

    :param conn: an autocommit connection (used by this thread only).
    :param client: a boto3 S3 client (thread-safe: the mover shares it).
    :param bucket: the landing bucket.
    :param claims: the claims, in the order to load them.
    :param lease_minutes: lease length.
    :param max_attempts: claims after which a file that still fails is quarantined.
    :param secret: callable returning the IP pseudonym key (default: the Variable).
    """
    results: list[FileResult] = []
    moving: tuple[int, Claim, FileResult] | None = None  # the file whose move is running

    def failed(claim: Claim, exc: BaseException) -> FileResult:
        detail = _describe(exc)
        _record_error(conn, claim, detail)
        return FileResult(claim.key, claim.file_id, FAILED, detail=detail)

    def finish(index: int, claim: Claim, result: FileResult) -> None:
        assert result.move is not None
        try:
            _finish_move(conn, claim, result, result.move.result())
        except Exception as exc:
            log.exception(
                "FAILED moving s3://%s/%s (file_id=%d, loaded and committed) to processed/: %s; "
                "a retry moves it without loading it again",
                bucket,
                claim.key,
                claim.file_id,
                _describe(exc),
            )
            results[index] = failed(claim, exc)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-move") as mover:
        for claim in claims:
            try:
                result = process_claim(
                    conn,
                    client,
                    bucket,
                    claim,
                    lease_minutes=lease_minutes,
                    max_attempts=max_attempts,
                    secret=secret,
                    mover=mover,
                )
            except Exception as exc:
                log.exception(
                    "FAILED s3://%s/%s (file_id=%d): %s", bucket, claim.key, claim.file_id, _describe(exc)
                )
                result = failed(claim, exc)
            results.append(result)
            if moving is not None:  # the previous file's move ran while this one loaded
                finish(*moving)
                moving = None
            if result.move is not None:
                moving = (len(results) - 1, claim, result)
        if moving is not None:
            finish(*moving)
    return results


def process_claim(
    conn: psycopg.Connection,
    client: Any,
    bucket: str,
    claim: Claim,
    *,
    lease_minutes: int,
    max_attempts: int,
    secret: Any = None,
    mover: Executor | None = None,
) -> FileResult:
    """Bring one claimed file to its final place (load if needed, then move).

    :param conn: an autocommit connection.
    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param claim: the claim.
    :param lease_minutes: lease length.
    :param max_attempts: claims after which a file that still fails is quarantined.
    :param secret: callable returning the IP pseudonym key (default: the Variable).
    :param mover: when given, the move of a file loaded by this call is handed to it
        (``result.move`` holds its future) and left for the caller to finish with
        :func:`_finish_move` (:func:`load_claims` does); otherwise it happens here.
    """
    started = time.monotonic()
    if claim.reupload:
        # identical re-upload of a file already handled: move it out again, load nothing
        if claim.status == "processed":
            dest = landing.processed_key(claim.key)
        else:
            dest = landing.quarantine_key(claim.key)
        how = landing.move_object(client, bucket, claim.key, dest, claim.etag)
        log.info("moved re-uploaded %s -> %s (%s)", claim.key, dest, how)
        return FileResult(
            claim.key, claim.file_id, MOVED_ONLY, dest_key=dest, detail="identical re-upload", bytes=0
        )

    row = conn.execute(
        load_sql("ingest/start_load.sql"),
        {"file_id": claim.file_id, "token": claim.token, "lease_minutes": lease_minutes},
    ).fetchone()
    if row is None:
        log.warning(
            "skipping %s (file_id=%d): claim %s was taken over by another run",
            claim.key,
            claim.file_id,
            claim.token,
        )
        return FileResult(claim.key, claim.file_id, SKIPPED, detail="claim taken over by another run")
    status, attempts = row
    result: FileResult | None = None
    if status == "claimed":
        if attempts > max_attempts:
            info = _file_row(conn, claim.file_id)
            result = _quarantine(
                conn,
                claim,
                "repeated_failure",
                f"failed in {attempts - 1} attempts; last error: {info.get('error') or 'unknown'}",
                lease_minutes,
            )
        else:
            result = load_claimed_file(
                conn, client, bucket, claim, lease_minutes=lease_minutes, secret=secret
            )
        status = "loaded" if result.outcome == LOADED else result.outcome
        if result.outcome == SKIPPED:
            return result
    if status == "loaded":
        dest = landing.processed_key(claim.key)
        if result is not None and mover is not None:
            # loaded just now: the S3 copy + delete overlap the caller's next file
            result.move = mover.submit(landing.move_object, client, bucket, claim.key, dest, claim.etag)
            result.dest_key = dest
            result.seconds = round(time.monotonic() - started, 3)
            return result
        how = landing.move_object(client, bucket, claim.key, dest, claim.etag)
        _finish_move(conn, claim, result, how)
        if result is None:
            info = _file_row(conn, claim.file_id)
            log.info(
                "finished move of %s -> %s (%s; file_id=%d loaded %s rows earlier)",
                claim.key,
                dest,
                how,
                claim.file_id,
                info.get("rows_loaded"),
            )
            result = FileResult(claim.key, claim.file_id, MOVED_ONLY, dest_key=dest, detail=how)
    elif status == "quarantined":
        result = _finish_quarantine(conn, client, bucket, claim, result)
    if result is None:  # processed already (a retry after the move)
        result = FileResult(claim.key, claim.file_id, SKIPPED, detail=f"already {status}")
    if result.outcome in (MOVED_ONLY, SKIPPED) and not claim.reupload:
        # an earlier try of this same run may have committed the rows: report them,
        # so the run's summary and its Asset event count what this run loaded
        info = _file_row(conn, claim.file_id)
        if info.get("claimed_by") == claim.token and info.get("rows_loaded"):
            result.rows_loaded = int(info["rows_loaded"])
            result.rows_rejected = int(info.get("rows_rejected") or 0)
            result.detail = f"{result.detail}; loaded by an earlier try of this run"
    result.seconds = round(time.monotonic() - started, 3)
    return result


def load_claimed_file(
    conn: psycopg.Connection,
    client: Any,
    bucket: str,
    claim: Claim,
    *,
    lease_minutes: int,
    secret: Any = None,
) -> FileResult:
    """Load one claimed file in one transaction (COPY + registry + ingest_counts).

    Lines PostgreSQL refuses (a value our validation let through) are mapped
    back to their source line, rejected, and the file is loaded again without
    them; an unreadable file is marked quarantined instead.

    :param conn: an autocommit connection.
    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param claim: a claim whose registry status is ``claimed``.
    :param lease_minutes: lease length.
    :param secret: callable returning the IP pseudonym key (default: the Variable).
    :return: ``loaded``, ``quarantined`` or ``skipped`` (another loader won).
    """
    import psycopg

    from events_pipeline.ingest.arrow_row_builder import FastRowBuilder  # pyarrow: imported by the task only

    started = time.monotonic()
    try:
        fmt = file_format(claim.key)
    except UnreadableFileError as exc:
        return _quarantine(conn, claim, exc.kind, exc.detail, lease_minutes)
    matcher = DomainMatcher(load_domain_map(conn))
    secret_fn = secret or (lambda: get_setting(VAR_IP_HASH_SECRET))
    file_batch_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{bucket}/{claim.key}#{claim.etag}"))
    rejects = RejectSink()
    skip_lines: dict[int, str] = {}
    try:
        while True:
            rejects.reset()
            builder = (FastRowBuilder if FAST_PATH else RowBuilder)(
                matcher,
                file_id=claim.file_id,
                file_batch_id=file_batch_id,
                line_id_prefix=f"{bucket}/{claim.key}#{claim.etag}",
                secret=secret_fn,
                rejects=rejects,
                skip_lines=dict(skip_lines),
            )
            try:
                outcome = _load_once(
                    conn, client, bucket, claim, fmt, builder, file_batch_id, lease_minutes, started
                )
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
            except (psycopg.errors.DataError, psycopg.errors.CheckViolation) as exc:
                # a value our rules let through but PostgreSQL refuses (a type or a CHECK)
                copy_line = loading.copy_error_line(exc)
                if copy_line is None or copy_line >= len(builder.copy_line_to_source):
                    raise
                source_line = builder.copy_line_to_source[copy_line]
                reason = f"refused by PostgreSQL: {exc.diag.message_primary or exc}"
                log.warning(
                    "%s line %d %s; loading the file again without it", claim.key, source_line, reason
                )
                skip_lines[source_line] = reason
                if len(skip_lines) > MAX_REFUSED_LINES:
                    return _quarantine(
                        conn,
                        claim,
                        "refused_by_database",
                        f"PostgreSQL refused more than {MAX_REFUSED_LINES} lines; last: line "
                        f"{source_line}: {reason}",
                        lease_minutes,
                    )
                continue
            if outcome is None:
                log.warning("skipping %s (file_id=%d): another run loaded it", claim.key, claim.file_id)
                return FileResult(claim.key, claim.file_id, SKIPPED, detail="loaded by another run")
            return outcome
    finally:
        rejects.close()


def _load_once(
    conn: psycopg.Connection,
    client: Any,
    bucket: str,
    claim: Claim,
    fmt: str,
    builder: RowBuilder,
    file_batch_id: str,
    lease_minutes: int,
    started: float,
) -> FileResult | None:
    from events_pipeline.ingest.arrow_row_builder import FastRowBuilder

    with conn.transaction():
        locked = loading.lock_claim(conn, claim.file_id)
        if locked is None or locked[0] != "claimed" or locked[1] != claim.token:
            return None
        with tempfile.TemporaryFile() as spool:
            if fmt == PARQUET:
                if not landing.download_object(client, bucket, claim.key, claim.etag, spool):
                    raise _VanishedError
                spool.seek(0)
                blocks = (builder.record_block(rows) for rows in iter_parquet_batches(spool))
                sent = loading.copy_events(conn, blocks)
            else:
                body = landing.open_object(client, bucket, claim.key, claim.etag)
                if body is None:
                    raise _VanishedError
                try:
                    if isinstance(builder, FastRowBuilder):  # the vectorised path (fast_rows)
                        blocks = iter_byte_blocks(body, gzipped=fmt.endswith(".gz"))
                        parts = (part for b in blocks for part in builder.ndjson_bytes_parts(b))
                        sent = loading.copy_events(conn, parts)
                    else:
                        lines = iter_line_blocks(body, gzipped=fmt.endswith(".gz"))
                        sent = loading.copy_events(conn, (builder.ndjson_block(b) for b in lines))
                finally:
                    body.close()
        rej_key = None
        if builder.rejects.count:
            rej_key = landing.rejected_key(claim.key)
            landing.put_bytes(client, bucket, rej_key, builder.rejects.stream(), "application/x-ndjson")
        if len(builder.batch_ids) == 1 and builder.rows_with_batch == builder.rows:
            batch_id = next(iter(builder.batch_ids))
        else:
            batch_id = file_batch_id
        duration_ms = int((time.monotonic() - started) * 1000)
        updated = loading.mark_loaded(
            conn,
            file_id=claim.file_id,
            token=claim.token,
            batch_id=batch_id,
            rows_loaded=builder.rows,
            rows_rejected=builder.rejects.count,
            rejected_key=rej_key,
            lines_nul_replaced=builder.nul_lines,
            lines_blank=builder.blank,
            duration_ms=duration_ms,
            lease_minutes=lease_minutes,
        )
        if updated != 1:  # pragma: no cover - the row lock makes this impossible
            raise PipelineError(
                f"registry row of {claim.key} (file_id={claim.file_id}) changed under its lock"
            )
        loading.write_ingest_counts(conn, claim.file_id, builder.per_client)
        ingest_faults.checkpoint("before_commit", claim.key)
    ingest_faults.checkpoint("after_commit", claim.key)
    seconds = time.monotonic() - started
    result = FileResult(
        claim.key,
        claim.file_id,
        LOADED,
        rows_loaded=builder.rows,
        rows_rejected=builder.rejects.count,
        bytes=claim.size_bytes or 0,
        seconds=round(seconds, 3),
        per_client=dict(builder.per_client),
        detail=f"batch_id={batch_id}",
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
        f" -> s3://{bucket}/{rej_key}" if rej_key else "",
        builder.blank,
        builder.nul_lines,
        (claim.size_bytes or 0) / 1e6,
        sent / 1e6,
        seconds,
        builder.rows / seconds if seconds > 0 else 0.0,
        clients or "none",
        getattr(builder, "fast_lines", 0),
        getattr(builder, "slow_lines", builder.line_no),
    )
    return result


class _VanishedError(PipelineError):
    """The registered version of the object is no longer in incoming/."""


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
    error = orjson.dumps({"kind": kind, "detail": detail, "line": line}).decode("utf-8")
    with conn.transaction():
        locked = loading.lock_claim(conn, claim.file_id)
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
    how = landing.move_object(client, bucket, claim.key, dest, claim.etag)
    note = None
    if how in ("replaced", "already_moved_missing_dest"):
        note = orjson.dumps({**error_doc, "move": how}).decode("utf-8")
    _mark_moved(conn, claim, dest, note)
    if result is None:
        result = FileResult(
            claim.key, claim.file_id, QUARANTINED, detail=error_doc.get("detail"), bytes=claim.size_bytes
        )
    result.dest_key = dest
    return result


def _finish_move(conn: psycopg.Connection, claim: Claim, result: FileResult | None, how: str) -> None:
    """Record in the registry that a loaded file was moved to ``processed/`` (``how``: see move_object).

    :param result: the file's result from this run, if it was loaded by it (gets ``dest_key``).
    """
    dest = landing.processed_key(claim.key)
    note = None
    if how == "replaced":
        note = f"not moved: {claim.key} was overwritten by a newer version, which is loaded separately"
    elif how == "already_moved_missing_dest":
        note = f"{claim.key} was neither in incoming/ nor in processed/ when moving it"
    _mark_moved(conn, claim, dest, note)
    if result is not None:
        result.dest_key = dest
        result.move = None


def _mark_moved(conn: psycopg.Connection, claim: Claim, dest: str, note: str | None) -> None:
    with conn.transaction():
        conn.execute(
            load_sql("ingest/mark_moved.sql"), {"file_id": claim.file_id, "dest_key": dest, "note": note}
        )


def _file_row(conn: psycopg.Connection, file_id: int) -> dict[str, Any]:
    cur = conn.execute(load_sql("ingest/get_file.sql"), {"file_id": file_id})
    row = cur.fetchone()
    if row is None:
        return {}
    return dict(zip([d.name for d in cur.description], row, strict=True))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _record_error(conn: psycopg.Connection, claim: Claim, detail: str) -> None:
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
        "bytes": size,
        "file_seconds": round(seconds, 3),
        "per_client": per_client,
        "quarantined": [r["key"] for r in files if r["outcome"] == QUARANTINED],
    }
    outcome_text = ", ".join(f"{n} {o}" for o, n in sorted(by_outcome.items())) or "nothing to do"
    log.info(
        "ingest run: %d file(s) (%s); %d rows loaded, %d rejected; %.1f MB in %.1f s of file work "
        "(%.0f events/s); unattributed %d%s",
        len(files),
        outcome_text,
        rows,
        rejected,
        size / 1e6,
        seconds,
        rows / seconds if seconds > 0 else 0.0,
        per_client.get("", 0),
        f"; QUARANTINED: {', '.join(totals['quarantined'])}" if totals["quarantined"] else "",
    )
    return totals
