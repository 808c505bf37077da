"""Hourly per-client export: select the hour's rows, write Parquet parts, mark them, publish.

One call of :func:`export_client_hour` exports one client's UTC hour:

1. validate the client's id, bucket and prefix (tenant isolation) and reach both buckets;
2. under a per-client advisory lock, decide what the run takes (``export_runs``):
   nothing new when the hour is already published, else the unclaimed pending
   rows created before the hour's end (or inside it, for a backfill of an old
   hour); record the attempt as ``running``;
3. in ONE ``REPEATABLE READ`` transaction: stream ``COPY (SELECT ...) TO STDOUT``
   into Parquet parts, upload each part to the client bucket, then the backup
   bucket; then assign the hour and mark the rows ``exported`` (+ ``processed_at``)
   with the same predicate in the same snapshot (one row rewrite), check the
   count, commit;
4. write ``_manifest.json`` (the commit marker for readers) to the client
   bucket, then the backup bucket, remove stale parts, record the run as
   ``succeeded``.

Keys are deterministic per (client, hour, part). A crash before the commit
marks nothing (the retry exports again); a crash after it leaves the rows in
the hour (``export_hour``), so the retry rewrites the same rows (plus any row
that arrived since, the hour having no manifest yet). See ``docs/export.md`` and
``docs/decisions/export-one-rewrite.md``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from psycopg import errors as psycopg_errors

from events_pipeline.common.db import advisory_lock_key, connect, load_sql
from events_pipeline.common.errors import PipelineError, ServiceUnreachableError, SettingError
from events_pipeline.common.intervals import HourInterval, hour_of
from events_pipeline.common.settings import (
    AWS_CONN_ID,
    EVENTS_DB_CONN_ID,
    VAR_BACKUP_BUCKET,
    Setting,
    get_setting,
    register,
)
from events_pipeline.export.keys import (
    MANIFEST_NAME,
    PART_RE,
    ExportLocation,
    TenantIsolationError,
    backup_location,
    check_no_overlap,
    client_location,
)
from events_pipeline.export.manifest import ExportedFile, build_manifest, dump_manifest
from events_pipeline.export.parquet_parts import (
    PartSettings,
    iter_adbc_batches,
    iter_record_batches,
    prefetch,
    write_parts,
)

log = logging.getLogger(__name__)

PART_MAX_ROWS = register(
    Setting("events_export_part_max_rows", 1_000_000, "rows per exported Parquet part before rolling over")
)
PART_MAX_BYTES = register(
    Setting(
        "events_export_part_max_bytes",
        256 * 1024 * 1024,
        "bytes per exported Parquet part before rolling over",
    )
)
CSV_BLOCK_BYTES = register(
    Setting(
        "events_export_csv_block_bytes",
        16 * 1024 * 1024,
        "bytes of COPY output parsed at a time; must exceed the largest single event row",
    )
)
READER = register(
    Setting(
        "events_export_reader",
        "auto",
        "how the export reads rows: adbc (binary COPY into Arrow, needs adbc-driver-postgresql), "
        "csv (COPY csv parsed by Arrow), auto (adbc when installed)",
    )
)
ROW_GROUP_ROWS = register(
    Setting("events_export_row_group_rows", 65_536, "rows per Parquet row group (bounds export memory)")
)

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
#: How long an export waits for another export of the same client (any hour) to finish.
CLIENT_LOCK_TIMEOUT = "15min"


class ExportError(PipelineError):
    """An export step failed; the message names the client, hour, bucket and key."""


class PermanentExportError(ExportError, AirflowFailException):
    """An export cannot succeed by retrying (configuration or permissions): the task fails at once."""


@dataclass(frozen=True)
class ClientConfig:
    """A client's export configuration (a row of ``clients``).

    :param client_id: the client.
    :param active: whether the client is exported.
    :param export_bucket: its bucket.
    :param export_prefix: its key prefix.
    :param export_conn_id: Airflow connection for its bucket (``None`` -> ``aws_default``).
    """

    client_id: str
    active: bool
    export_bucket: str
    export_prefix: str
    export_conn_id: str | None

    @property
    def conn_id(self) -> str:
        """The Airflow AWS connection used for the client's bucket."""
        return self.export_conn_id or AWS_CONN_ID


def part_settings() -> PartSettings:
    """Return the Parquet size bounds from the Airflow Variables (or their defaults)."""
    return PartSettings(
        part_max_rows=int(get_setting(PART_MAX_ROWS.name)),
        part_max_bytes=int(get_setting(PART_MAX_BYTES.name)),
        row_group_rows=int(get_setting(ROW_GROUP_ROWS.name)),
        csv_block_bytes=int(get_setting(CSV_BLOCK_BYTES.name)),
    )


def active_client_ids(conn_id: str = EVENTS_DB_CONN_ID) -> list[str]:
    """Return the ids of active clients, sorted (one mapped export each).

    :param conn_id: Airflow connection of the events database.
    """
    with connect(conn_id, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute(load_sql("export/active_clients.sql")).fetchall()]
    log.info("export: %d active client(s): %s", len(ids), ", ".join(ids) or "-")
    return ids


def load_client(conn: Any, client_id: str) -> ClientConfig | None:
    """Return a client's configuration, or ``None`` when it does not exist.

    :param conn: an open connection to the events database.
    :param client_id: the client.
    """
    row = conn.execute(load_sql("export/client_config.sql"), {"client_id": client_id}).fetchone()
    return ClientConfig(*row) if row else None


def resolve_locations(
    conn: Any, client: ClientConfig, hour: HourInterval, backup_bucket: str
) -> tuple[ExportLocation, ExportLocation]:
    """Validate the client's configuration against every other client; return both folders.

    :param conn: an open connection to the events database.
    :param client: the client's configuration.
    :param hour: the exported hour.
    :param backup_bucket: the backup bucket.
    :raises TenantIsolationError: an invalid id, bucket or prefix, or an overlap
        with another client's space or the backup bucket.
    """
    target = client_location(client.client_id, client.export_bucket, client.export_prefix, hour)
    backup = backup_location(client.client_id, backup_bucket, hour)
    others = conn.execute(load_sql("export/client_spaces.sql")).fetchall()
    check_no_overlap(client.client_id, client.export_bucket, client.export_prefix, others, backup_bucket)
    return target, backup


def _params(client_id: str, hour: HourInterval, **extra: Any) -> dict[str, Any]:
    return {"client_id": client_id, "hour_start": hour.start, "hour_end": hour.end, **extra}


def begin_run(conn: Any, client_id: str, hour: HourInterval, run_id: str | None) -> dict[str, Any]:
    """Decide what this run of (client, hour) exports and record the attempt as ``running``.

    Rules (docs/decisions/export-one-rewrite.md):

    - hour already ``succeeded``: take nothing new (a re-run rewrites the same rows), claim ``none``;
    - no later hour of the client has started: take every unclaimed pending row
      created before the hour's end (late rows of earlier hours included), claim ``through``;
    - a later hour already started (a backfill of an old hour): take only the
      unclaimed pending rows created inside the hour, claim ``within``.

    The rows themselves are taken later, by :data:`mark_rows.sql` in the export's snapshot.

    :param conn: an autocommit connection (this opens its own short transaction).
    :param client_id: the client.
    :param hour: the hour.
    :param run_id: the Airflow run id, recorded in ``export_runs``.
    :return: ``{"published": bool, "claim": "none" | "through" | "within", "recorded_rows": int | None}``.
    """
    params = _params(client_id, hour, run_id=run_id)
    with conn.transaction():
        status, recorded_rows, later = conn.execute(load_sql("export/lock_run_state.sql"), params).fetchone()
        published = status == "succeeded"
        claim = "none" if published else ("within" if later else "through")
        conn.execute(load_sql("export/start_run.sql"), params)
    return {"published": published, "claim": claim, "recorded_rows": recorded_rows}


def _s3_error(exc: Exception, client_id: str, bucket: str, key: str, conn_id: str) -> ExportError:
    code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    where = f"client {client_id!r}: writing s3://{bucket}/{key} through connection {conn_id!r}"
    if code in {"AccessDenied", "403", "Forbidden", "NoSuchBucket", "404", "NotFound"}:
        return PermanentExportError(f"{where} failed: {code} (bucket missing or access denied)")
    return ExportError(f"{where} failed: {type(exc).__name__}: {exc}")


class _Uploader:
    """Puts files into the client folder then the backup folder, naming the target on failure."""

    def __init__(self, client: ClientConfig, target: ExportLocation, backup: ExportLocation) -> None:
        from events_pipeline.common.s3 import s3_client

        self.client = client
        self.target, self.backup = target, backup
        self.target_s3 = s3_client(client.conn_id)
        self.backup_s3 = s3_client(AWS_CONN_ID)
        self.upload_seconds = 0.0
        self.uploaded: list[tuple[Any, str, str]] = []

    def destinations(self) -> list[tuple[Any, ExportLocation, str]]:
        return [
            (self.target_s3, self.target, self.client.conn_id),
            (self.backup_s3, self.backup, AWS_CONN_ID),
        ]

    def check_client_bucket(self) -> None:
        """Fail with one line naming the client, bucket and connection when the bucket is unusable.

        The backup bucket is not probed here: an error there surfaces at the
        first upload, naming the bucket and the Variable.
        """
        from events_pipeline.common.s3 import check_bucket

        check_bucket(
            self.target_s3,
            self.target.bucket,
            what=f"client {self.client.client_id!r} export_bucket",
            conn_id=self.client.conn_id,
        )

    def upload_file(self, path: Path, info: ExportedFile) -> None:
        started = time.monotonic()
        for s3, loc, conn_id in self.destinations():
            key = loc.key(info.key)
            try:
                s3.upload_file(
                    str(path),
                    loc.bucket,
                    key,
                    ExtraArgs={"ContentType": PARQUET_CONTENT_TYPE, "Metadata": {"sha256": info.sha256}},
                )
            except Exception as exc:
                raise _s3_error(exc, self.client.client_id, loc.bucket, key, conn_id) from exc
            self.uploaded.append((s3, loc.bucket, key))
            log.info(
                "export client=%s part=%s rows=%d bytes=%d -> s3://%s/%s",
                self.client.client_id,
                info.key,
                info.rows,
                info.bytes,
                loc.bucket,
                key,
            )
        self.upload_seconds += time.monotonic() - started

    def put_manifest(self, body: bytes) -> None:
        for s3, loc, conn_id in self.destinations():
            try:
                s3.put_object(
                    Bucket=loc.bucket, Key=loc.manifest_key, Body=body, ContentType="application/json"
                )
            except Exception as exc:
                raise _s3_error(exc, self.client.client_id, loc.bucket, loc.manifest_key, conn_id) from exc

    def discard_uploaded(self) -> None:
        """Best effort: delete the parts this attempt uploaded (no manifest lists them, nothing marked)."""
        for s3, bucket, key in self.uploaded:
            try:
                s3.delete_object(Bucket=bucket, Key=key)
                log.info(
                    "export client=%s: removed s3://%s/%s of the failed attempt",
                    self.client.client_id,
                    bucket,
                    key,
                )
            except Exception as exc:  # noqa: BLE001 - the retry or a re-run removes it too
                log.warning(
                    "export client=%s: could not remove s3://%s/%s: %s",
                    self.client.client_id,
                    bucket,
                    key,
                    exc,
                )
        self.uploaded.clear()

    def remove_stale_parts(self, keep: set[str]) -> list[str]:
        """Delete ``part-NNNNN.parquet`` files of the folder not listed in the new manifest."""
        removed = []
        for s3, loc, _conn_id in self.destinations():
            resp = s3.list_objects_v2(Bucket=loc.bucket, Prefix=f"{loc.folder}/")
            for obj in resp.get("Contents", []):
                name = obj["Key"][len(loc.folder) + 1 :]
                if PART_RE.fullmatch(name) and name not in keep:
                    s3.delete_object(Bucket=loc.bucket, Key=obj["Key"])
                    removed.append(f"s3://{loc.bucket}/{obj['Key']}")
        return removed


def _copy_sql() -> str:
    return "COPY (" + load_sql("export/select_rows.sql").strip().rstrip(";") + ") TO STDOUT (FORMAT csv)"


#: Settings of the export read (both readers). No parallel workers: the ordered
#: index scan streams rows from the first millisecond (a parallel seq scan + sort
#: emits nothing until the whole hour is sorted) and leaves the CPUs to the encoder.
READ_SETTINGS = {
    "work_mem": "64MB",
    "jit": "off",  # a plain scan: JIT compile time is pure overhead
    "max_parallel_workers_per_gather": "0",
}


def reader_name() -> str:
    """Return the reader the export uses: ``adbc`` when installed (unless the Variable says ``csv``)."""
    wanted = str(get_setting(READER.name)).strip().lower()
    if wanted not in {"auto", "adbc", "csv"}:
        raise SettingError(f"Variable {READER.name} must be auto, adbc or csv, got {wanted!r}")
    if wanted == "csv":
        return "csv"
    try:
        import adbc_driver_postgresql  # noqa: F401
    except ImportError as exc:
        if wanted == "adbc":
            raise SettingError(
                f"Variable {READER.name}=adbc but adbc-driver-postgresql is not installed: {exc}"
            ) from exc
        return "csv"
    return "adbc"


def _conninfo(conn: Any) -> str:
    """The libpq connection string of ``conn`` (password included) for the second, reading
    connection, with :data:`READ_SETTINGS` as its session settings."""
    from psycopg.conninfo import make_conninfo

    # only what differs from libpq's defaults: the driver's bundled libpq may not know
    # every keyword of psycopg's libpq
    params = {
        o.keyword.decode(): o.val.decode()
        for o in conn.pgconn.info
        if o.val is not None and o.val != o.compiled and o.keyword != b"fallback_application_name"
    }
    settings = " ".join(f"-c {name}={value}" for name, value in READ_SETTINGS.items())
    params["options"] = f"{params.get('options', '')} {settings}".strip()
    return make_conninfo(**params)


class _Background:
    """Run ``fn`` in a thread; :meth:`join` returns its result or re-raises its exception."""

    def __init__(self, fn: Any, name: str) -> None:
        import threading

        self.fn, self.result, self.exc = fn, None, None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self.exc = exc

    def join(self) -> Any:
        self.thread.join()
        if self.exc is not None:
            raise self.exc
        return self.result


def _stream_parts(
    conn: Any,
    params: dict[str, Any],
    uploader: _Uploader,
    settings: PartSettings,
    reader: str,
    mark: Any,
) -> tuple[list[ExportedFile], Any]:
    """Read the selected rows into Parquet parts uploaded to both buckets, and run ``mark``.

    Runs inside the caller's ``REPEATABLE READ`` transaction on ``conn``. With the
    ADBC reader the rows are read through a second connection in this
    transaction's snapshot, so ``mark`` (the marking UPDATE on ``conn``) runs at
    the same time as the read, encode and upload: its changes stay uncommitted
    (invisible to the reader and to everyone) until the caller commits, after
    every upload. With the CSV reader ``conn`` carries the COPY, so ``mark`` runs after it.

    :return: ``(parts, what mark returned)``.
    """
    with tempfile.TemporaryDirectory(prefix=f"export-{params['client_id']}-") as workdir:
        if reader != "adbc":
            with (
                conn.cursor().copy(_copy_sql(), params) as copy,
                closing(prefetch(iter_record_batches(copy, settings.csv_block_bytes))) as batches,
            ):
                parts = write_parts(batches, Path(workdir), uploader.upload_file, settings)
            return parts, mark()

        from psycopg import ClientCursor

        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        query = ClientCursor(conn).mogrify(load_sql("export/select_rows.sql").strip().rstrip(";"), params)
        marker = _Background(mark, name="export-mark")
        try:
            # closing(): on a failure the reading thread stops (and closes its connection) now
            with closing(prefetch(iter_adbc_batches(_conninfo(conn), snapshot, query))) as batches:
                parts = write_parts(batches, Path(workdir), uploader.upload_file, settings)
        except BaseException as exc:
            if marker.thread.is_alive():
                conn.cancel_safe()
            marker.thread.join()
            if marker.exc is not None and not isinstance(marker.exc, psycopg_errors.QueryCanceled):
                # the marking failed first (its failed transaction also voids the snapshot the
                # reader imports): its error is the cause to report
                raise marker.exc from exc
            raise
        return parts, marker.join()


def export_client_hour(
    client_id: str,
    data_interval_start: datetime,
    data_interval_end: datetime,
    *,
    run_id: str | None = None,
    conn_id: str = EVENTS_DB_CONN_ID,
    settings: PartSettings | None = None,
) -> dict[str, Any]:
    """Export one client's UTC hour to its bucket and the backup bucket (idempotent).

    :param client_id: the client to export.
    :param data_interval_start: the run's ``data_interval_start``.
    :param data_interval_end: the run's ``data_interval_end`` (exactly one hour later).
    :param run_id: the Airflow run id, recorded in ``export_runs``.
    :param conn_id: Airflow connection of the events database.
    :param settings: Parquet size bounds (default: from the Variables).
    :return: a summary (client, interval, rows, bytes, files, manifest URIs, seconds).
    :raises PermanentExportError: retrying cannot help (invalid or overlapping
        configuration, bucket missing, access denied).
    :raises ExportError: a step failed; the retry redoes the export idempotently.
    """
    started = time.monotonic()
    try:
        hour = hour_of(data_interval_start, data_interval_end)
        backup_bucket = get_setting(VAR_BACKUP_BUCKET)
        settings = settings or part_settings()
        reader = reader_name()
    except (SettingError, ValueError) as exc:  # IntervalError is a ValueError
        raise PermanentExportError(f"export client={client_id}: {exc}") from exc
    with connect(conn_id, autocommit=True) as conn:
        client = load_client(conn, client_id)
        if client is None or not client.active:
            log.warning(
                "export client=%s hour=%s: client missing or inactive now; nothing done", client_id, hour
            )
            return {"client_id": client_id, "interval_start": hour.start.isoformat(), "skipped": "inactive"}
        try:
            target, backup = resolve_locations(conn, client, hour, backup_bucket)
            uploader = _Uploader(client, target, backup)
            uploader.check_client_bucket()
        except (TenantIsolationError, SettingError) as exc:
            _record_failure(conn, client_id, hour, run_id, exc)
            raise PermanentExportError(f"export client={client_id} hour={hour}: {exc}") from exc
        except ServiceUnreachableError as exc:
            _record_failure(conn, client_id, hour, run_id, exc)
            raise

        # One export of a client at a time (any hour): the run decision and the
        # marking of one hour never interleave with another hour's, so a row is
        # never exported by two hours. Taken outside any transaction (an
        # advisory lock taken inside would come after the snapshot).
        lock = advisory_lock_key(f"events_export.client.{client_id}")
        try:
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (CLIENT_LOCK_TIMEOUT,))
            conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
            conn.execute("RESET lock_timeout")
        except psycopg_errors.LockNotAvailable as exc:
            raise ExportError(
                f"export client={client_id} hour={hour}: another export of this client has run for over "
                f"{CLIENT_LOCK_TIMEOUT} (lock timeout); will retry"
            ) from exc
        try:
            return _export_locked(
                conn, client, hour, target, backup, uploader, settings, run_id, started, reader
            )
        except Exception as exc:
            _record_failure(conn, client_id, hour, run_id, exc)
            raise
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))
            except Exception:  # noqa: BLE001 - a broken connection drops the lock; keep the first error
                log.warning("export client=%s hour=%s: could not release the advisory lock", client_id, hour)


def _export_locked(
    conn: Any,
    client: ClientConfig,
    hour: HourInterval,
    target: ExportLocation,
    backup: ExportLocation,
    uploader: _Uploader,
    settings: PartSettings,
    run_id: str | None,
    started: float,
    reader: str,
) -> dict[str, Any]:
    cid = client.client_id
    run = begin_run(conn, cid, hour, run_id)
    params = _params(cid, hour, claim=run["claim"])
    log.info(
        "export client=%s hour=%s: claim=%s (published=%s) reader=%s",
        cid,
        hour,
        run["claim"],
        run["published"],
        reader,
    )
    if run["published"] and run["recorded_rows"] is not None:
        remaining = conn.execute(load_sql("export/count_claimed.sql"), params).fetchone()[0]
        if remaining != run["recorded_rows"]:
            log.warning(
                "export client=%s hour=%s: published with %d rows, %d remain in events_log (retention or "
                "erasure removed some); the published objects are left untouched at %s",
                cid,
                hour,
                run["recorded_rows"],
                remaining,
                target.uri(MANIFEST_NAME),
            )
            return {
                "client_id": cid,
                "interval_start": hour.start.isoformat(),
                "skipped": "published-rows-gone",
            }

    try:
        parts, written, marked, mark_seconds = _read_and_mark(conn, params, run, uploader, settings, reader)
    except Exception:
        if not run["published"]:  # a published hour's parts are the published ones: keep them
            uploader.discard_uploaded()
        raise
    # Committed: the rows are in the hour. Publish the manifest last (a crash
    # before it leaves no manifest; the retry rewrites the same rows).
    manifest = build_manifest(cid, hour, parts)
    uploader.put_manifest(dump_manifest(manifest))
    removed = uploader.remove_stale_parts({p.key for p in parts})
    if removed:
        log.info("export client=%s hour=%s: removed stale parts %s", cid, hour, removed)

    total_bytes = sum(p.bytes for p in parts)
    duration_ms = int((time.monotonic() - started) * 1000)
    files = [{**p.as_dict(), "client_uri": target.uri(p.key), "backup_uri": backup.uri(p.key)} for p in parts]
    from psycopg.types.json import Jsonb

    conn.execute(
        load_sql("export/finish_run.sql"),
        _params(
            cid,
            hour,
            row_count=written,
            bytes=total_bytes,
            files=Jsonb(files),
            manifest_key=target.uri(MANIFEST_NAME),
            backup_manifest_key=backup.uri(MANIFEST_NAME),
            duration_ms=duration_ms,
            run_id=run_id,
        ),
    )
    seconds = duration_ms / 1000
    log.info(
        "export client=%s hour=%s DONE rows=%d (newly marked %d in %.2f s) bytes=%d parts=%d seconds=%.2f "
        "(upload %.2f) rows_per_s=%.0f -> %s and %s",
        cid,
        hour,
        written,
        marked,
        mark_seconds,
        total_bytes,
        len(parts),
        seconds,
        uploader.upload_seconds,
        written / seconds if seconds else 0.0,
        target.uri(MANIFEST_NAME),
        backup.uri(MANIFEST_NAME),
    )
    return {
        "client_id": cid,
        "interval_start": hour.start.isoformat(),
        "rows": written,
        "newly_marked": marked,
        "bytes": total_bytes,
        "parts": len(parts),
        "seconds": seconds,
        "upload_seconds": round(uploader.upload_seconds, 3),
        "mark_seconds": round(mark_seconds, 3),
        "manifest": target.uri(MANIFEST_NAME),
        "backup_manifest": backup.uri(MANIFEST_NAME),
        "claim_mode": run["claim"],
    }


def _read_and_mark(
    conn: Any,
    params: dict[str, Any],
    run: dict[str, Any],
    uploader: _Uploader,
    settings: PartSettings,
    reader: str,
) -> tuple[list[ExportedFile], int, int, float]:
    """In ONE REPEATABLE READ transaction: read the rows into uploaded parts, mark them, check, commit.

    :return: ``(parts, rows written, rows newly marked, seconds of the marking)``.
    """
    cid, hour = params["client_id"], HourInterval(params["hour_start"])
    try:
        with conn.transaction():
            # One snapshot for the COPY and the marking: the rows marked are exactly the rows written.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            for name, value in READ_SETTINGS.items():
                conn.execute("SELECT set_config(%s, %s, true)", (name, value))

            def mark() -> tuple[int, float]:
                if run["published"]:  # a published hour's rows were marked when it was published
                    return 0, 0.0
                started = time.monotonic()
                rowcount = conn.execute(load_sql("export/mark_rows.sql"), params).rowcount
                return rowcount, time.monotonic() - started

            parts, (marked, mark_seconds) = _stream_parts(conn, params, uploader, settings, reader, mark)
            written = sum(p.rows for p in parts)
            in_hour = conn.execute(load_sql("export/count_claimed.sql"), params).fetchone()[0]
            if written != in_hour:
                raise ExportError(
                    f"export client={cid} hour={hour}: wrote {written} rows but the hour holds {in_hour} "
                    "(rows changed during the export?); nothing marked, retrying rewrites the hour"
                )
    except psycopg_errors.SerializationFailure as exc:
        raise ExportError(
            f"export client={cid} hour={hour}: rows of the hour were changed or deleted by another "
            f"transaction (erasure, GDPR sweep, archival) during the export: nothing marked, the retry "
            f"exports again ({exc.diag.message_primary})"
        ) from exc
    except Exception as exc:
        if "straddl" in str(exc):  # Arrow: one row is larger than a CSV block
            raise PermanentExportError(
                f"export client={cid} hour={hour}: an event row is larger than "
                f"{settings.csv_block_bytes} bytes; raise Variable {CSV_BLOCK_BYTES.name} "
                "and clear the task"
            ) from exc
        raise
    return parts, written, marked, mark_seconds


def _record_failure(
    conn: Any, client_id: str, hour: HourInterval, run_id: str | None, exc: BaseException
) -> None:
    error = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
    log.error("export client=%s hour=%s FAILED: %s", client_id, hour, error)
    try:
        if conn.info.transaction_status != 0:  # not idle: a failed transaction is still open
            conn.rollback()
        conn.execute(load_sql("export/fail_run.sql"), _params(client_id, hour, run_id=run_id, error=error))
    except Exception:
        log.exception(
            "export client=%s hour=%s: could not record the failure in export_runs", client_id, hour
        )
