"""Hourly per-client export: select the hour's rows, write Parquet parts, mark them, publish.

One call of :func:`export_client_hour` exports one client's UTC hour:

1. validate the client's id, bucket and prefix (tenant isolation) and reach both buckets;
2. under a per-client advisory lock, decide what the run takes (``export_runs``):
   nothing new when the hour is already published, else the unclaimed pending
   rows created before the hour's end (or inside it, for a backfill of an old
   hour); record the attempt as ``running``;
3. in ONE ``REPEATABLE READ`` transaction: a second connection imports its
   snapshot and streams the rows (ADBC, binary COPY) into Parquet parts, each
   uploaded to the client bucket, then the backup bucket; meanwhile this
   transaction assigns the hour and marks the rows ``exported`` (+ ``processed_at``)
   with the same predicate in the same snapshot (one row rewrite); check the
   count, commit after the last upload;
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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException
from psycopg import errors as psycopg_errors

from events_pipeline.common.background import BackgroundCall, prefetched
from events_pipeline.common.db import advisory_lock, as_dict, connect, load_sql
from events_pipeline.common.errors import PipelineError, ServiceUnreachableError, SettingError
from events_pipeline.common.intervals import HourInterval, hour_of
from events_pipeline.common.s3 import ACCESS_DENIED, NO_SUCH_BUCKET, error_code
from events_pipeline.common.settings import (
    AWS_CONN_ID,
    EVENTS_DB_CONN_ID,
    VAR_BACKUP_BUCKET,
    VAR_LANDING_BUCKET,
    Setting,
    get_setting,
    register,
)
from events_pipeline.export.formats import ExportOptions
from events_pipeline.export.keys import (
    MANIFEST_NAME,
    PART_RE,
    ExportLocation,
    ExportSpace,
    TenantIsolationError,
    backup_location,
    client_location,
)
from events_pipeline.export.keys import check_destination as check_destination_rules
from events_pipeline.export.limits import ExportLimits, S3Clients, read_limits
from events_pipeline.export.manifest import CONTENT_TYPE as MANIFEST_CONTENT_TYPE
from events_pipeline.export.manifest import ExportedFile, build_manifest, dump_manifest
from events_pipeline.export.parquet_parts import PartSettings, iter_adbc_batches, write_parts
from events_pipeline.export.visitor_index import HourVisitors

if TYPE_CHECKING:
    from events_pipeline.export.gdpr_outbound import Untreated

log = logging.getLogger(__name__)

T = TypeVar("T")

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
ROW_GROUP_ROWS = register(
    Setting("events_export_row_group_rows", 65_536, "rows per Parquet row group (bounds export memory)")
)

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
#: Largest object S3 copies in one CopyObject request (5 GiB); larger parts use a multipart copy.
SINGLE_COPY_MAX_BYTES = 5 * 1024**3
#: Arrow batches read ahead of the Parquet encoder (each ~16 MiB).
PREFETCH_DEPTH = 2
#: Settings of the export read and marking. No parallel workers: the ordered
#: index scan streams rows from the first millisecond (a parallel seq scan + sort
#: emits nothing until the whole hour is sorted) and leaves the CPUs to the encoder.
READ_SETTINGS = {
    "work_mem": "64MB",
    "jit": "off",  # a plain scan: JIT compile time is pure overhead
    "max_parallel_workers_per_gather": "0",
}


class ExportError(PipelineError):
    """An export step failed; the message names the client, hour, bucket and key."""


class PermanentExportError(ExportError, AirflowFailException):
    """An export cannot succeed by retrying (configuration or permissions): the task fails at once."""


class ClientBusyError(ExportError):
    """Another export of the client (another hour's run) holds its lock: this one is retried later."""


@dataclass(frozen=True)
class ClientConfig:
    """A client's export configuration (a row of ``clients``).

    :param client_id: the client.
    :param active: whether the client is exported.
    :param export_bucket: its bucket.
    :param export_prefix: its key prefix.
    :param export_conn_id: Airflow connection for its bucket (``None`` -> ``aws_default``).
    :param export_format: ``parquet`` or ``jsonl`` (``export/formats.py``, migration 0090).
    :param export_compression: compression of its files.
    :param export_sse: ``None``, ``AES256`` or ``aws:kms`` (objects in its bucket).
    :param export_sse_kms_key_id: the KMS key with ``aws:kms``.
    :param export_part_max_bytes: its own part byte bound (``None``: the Variable).
    :param export_part_max_rows: its own part row bound (``None``: the Variable).
    :param privacy_level: ``standard`` or ``gdpr`` now (a gdpr client's rows stored before
        its switch are treated on the way out, ``export/gdpr_outbound.py``).
    """

    client_id: str
    active: bool
    export_bucket: str
    export_prefix: str
    export_conn_id: str | None
    export_format: str = "parquet"
    export_compression: str = "zstd"
    export_sse: str | None = None
    export_sse_kms_key_id: str | None = None
    export_part_max_bytes: int | None = None
    export_part_max_rows: int | None = None
    privacy_level: str = "standard"

    @property
    def options(self) -> ExportOptions:
        """The client's validated export options (raises ``ExportOptionsError`` naming the column)."""
        return ExportOptions.from_client(self)

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
    )


@dataclass
class SharedInputs:
    """What every client exported by one task shares: read once per task, not once per client.

    :param backup_bucket: the Variable ``events_backup_bucket``.
    :param landing_bucket: the Variable ``events_landing_bucket`` (never a destination).
    :param settings: the Parquet size bounds of the Variables.
    :param limits: S3 timeouts, lock wait, order window (``export/limits.py``).
    :param s3: the task's bounded S3 clients, by connection.
    """

    backup_bucket: str
    landing_bucket: str
    settings: PartSettings
    limits: ExportLimits
    s3: S3Clients


def shared_inputs(settings: PartSettings | None = None) -> SharedInputs:
    """Read the Variables every export needs once.

    :param settings: Parquet size bounds given by the caller (default: the Variables).
    :raises SettingError: a required Variable is missing or one holds a wrong value (names it).
    :raises ValueError: a limit out of range (names it).
    """
    limits = read_limits()
    return SharedInputs(
        backup_bucket=get_setting(VAR_BACKUP_BUCKET),
        landing_bucket=get_setting(VAR_LANDING_BUCKET),
        settings=settings or part_settings(),
        limits=limits,
        s3=S3Clients(limits),
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
    row = as_dict(conn.execute(load_sql("export/client_config.sql"), {"client_id": client_id}))
    return ClientConfig(**row) if row else None


def check_client_destination(
    conn: Any, client: ClientConfig, backup_bucket: str, landing_bucket: str | None = None
) -> None:
    """Check where a client's exports go against the buckets and every other client's spaces.

    The id, bucket and prefix rules; neither the client's bucket nor the backup bucket
    is the landing bucket; the client's bucket is not the backup bucket; its space
    overlaps no other client's current or earlier space (``export/keys.py``).

    :param conn: an open connection to the events database.
    :param client: the client's configuration.
    :param backup_bucket: the Variable ``events_backup_bucket``.
    :param landing_bucket: the Variable ``events_landing_bucket`` (read when ``None``).
    :raises TenantIsolationError: naming the client, the setting at fault and the rule.
    :raises SettingError: a Variable is missing.
    """
    if landing_bucket is None:
        landing_bucket = get_setting(VAR_LANDING_BUCKET)
    rows = conn.execute(load_sql("export/client_spaces.sql"), {"bucket": client.export_bucket}).fetchall()
    spaces = [ExportSpace(*row) for row in rows]
    since = next(
        (
            s.since
            for s in spaces
            if s.client_id == client.client_id and s.current and s.prefix == client.export_prefix
        ),
        None,
    )
    check_destination_rules(
        client.client_id,
        client.export_bucket,
        client.export_prefix,
        backup_bucket=backup_bucket,
        landing_bucket=landing_bucket,
        others=[s for s in spaces if s.client_id != client.client_id],
        since=since,
    )


def check_destination(client_id: str, *, conn_id: str = EVENTS_DB_CONN_ID) -> str:
    """Check a client's export destination as the export would, without touching S3.

    For the client-check DAG: the same rules as before every exported hour
    (:func:`check_client_destination`), read from ``clients``, ``export_spaces`` and
    the Variables ``events_backup_bucket`` and ``events_landing_bucket``.

    :param client_id: the client.
    :param conn_id: Airflow connection of the events database.
    :return: one line describing the accepted destination.
    :raises PermanentExportError: the client does not exist, or its destination is refused
        (the message names the client and the setting at fault).
    """
    with connect(conn_id, autocommit=True) as conn:
        client = load_client(conn, client_id)
        if client is None:
            raise PermanentExportError(f"client {client_id!r} does not exist in clients")
        try:
            backup_bucket = get_setting(VAR_BACKUP_BUCKET)
            check_client_destination(conn, client, backup_bucket)
        except (TenantIsolationError, SettingError) as exc:
            raise PermanentExportError(f"export destination of client {client_id!r} refused: {exc}") from exc
    return (
        f"client {client_id!r}: s3://{client.export_bucket}/{client.export_prefix}/ through connection "
        f"{client.conn_id!r}, backup s3://{backup_bucket}/{client_id}/: accepted"
    )


def resolve_locations(
    conn: Any, client: ClientConfig, hour: HourInterval, backup_bucket: str, landing_bucket: str | None = None
) -> tuple[ExportLocation, ExportLocation]:
    """Validate the client's destination (:func:`check_client_destination`); return both folders.

    :param conn: an open connection to the events database.
    :param client: the client's configuration.
    :param hour: the exported hour.
    :param backup_bucket: the backup bucket.
    :param landing_bucket: the landing bucket (default: the Variable ``events_landing_bucket``).
    :raises TenantIsolationError: an invalid id, bucket or prefix, the landing or backup
        bucket as a destination, or an overlap with another client's space.
    :raises SettingError: a Variable is missing.
    """
    check_client_destination(conn, client, backup_bucket, landing_bucket)
    target = client_location(client.client_id, client.export_bucket, client.export_prefix, hour)
    backup = backup_location(client.client_id, backup_bucket, hour)
    return target, backup


def _params(client_id: str, hour: HourInterval, **extra: Any) -> dict[str, Any]:
    """Return the named parameters of the ``include/sql/export`` statements.

    :param client_id: the client.
    :param hour: the hour (``hour_start``, ``hour_end``).
    :param extra: more parameters (``claim``, ``run_id``...).
    """
    return {"client_id": client_id, "hour_start": hour.start, "hour_end": hour.end, **extra}


def begin_run(
    conn: Any, client_id: str, hour: HourInterval, run_id: str | None, *, order_window_hours: int = 6
) -> dict[str, Any]:
    """Decide what this run of (client, hour) exports and record the attempt as ``running``.

    Rules (docs/decisions/export-one-rewrite.md, docs/decisions/export-no-shrink-and-spaces.md):

    - hour already ``succeeded``: take nothing new (a re-run rewrites the same rows), claim ``none``;
    - a later hour already started (a backfill of an old hour), or an earlier hour of the
      client within ``order_window_hours`` is still to come (hours running at once): take
      only the unclaimed pending rows created inside the hour, claim ``within``;
    - otherwise: take every unclaimed pending row created before the hour's end (late
      rows of earlier hours included), claim ``through``.

    The rows themselves are taken later, by :data:`mark_rows.sql` in the export's snapshot.

    :param conn: an autocommit connection (this opens its own short transaction).
    :param client_id: the client.
    :param hour: the hour.
    :param run_id: the Airflow run id, recorded in ``export_runs``.
    :param order_window_hours: how far back a missing earlier hour keeps this run to its own rows.
    :return: ``{"published": bool, "claim": "none" | "through" | "within", "recorded_rows": int | None,
        "committed_rows": int | None, "committed_files": list | None}``.
    """
    params = _params(client_id, hour, run_id=run_id, order_window_hours=order_window_hours)
    with conn.transaction():
        state = as_dict(conn.execute(load_sql("export/lock_run_state.sql"), params))
        assert state is not None  # a SELECT without FROM: always one row
        published = state["status"] == "succeeded"
        if published:
            claim = "none"
        elif state["later_run_exists"] or state["earlier_hour_missing"]:
            claim = "within"
        else:
            claim = "through"
        conn.execute(load_sql("export/start_run.sql"), params)
    return {
        "published": published,
        "claim": claim,
        "recorded_rows": state["row_count"],
        "committed_rows": state["committed_rows"],
        "committed_files": state["committed_files"],
        # no earlier attempt of this hour: its folders cannot hold parts of one
        "first_attempt": state["status"] is None,
    }


def client_lock_name(client_id: str) -> str:
    """Return the name of the advisory lock one export of a client holds (any hour).

    :param client_id: the client.
    """
    return f"events_export.client.{client_id}"


def _s3_error(exc: Exception, client_id: str, bucket: str, key: str, conn_id: str) -> ExportError:
    """Return the export error for a failed S3 write, naming client, object and connection.

    :param exc: what boto3 raised.
    :param client_id: the client.
    :param bucket: the bucket written to.
    :param key: the key written.
    :param conn_id: the Airflow connection used.
    :return: a :class:`PermanentExportError` when the bucket is missing or access is
        denied (retrying cannot help), else an :class:`ExportError`.
    """
    code = error_code(exc)
    where = f"client {client_id!r}: writing s3://{bucket}/{key} through connection {conn_id!r}"
    if code in ACCESS_DENIED | NO_SUCH_BUCKET:
        return PermanentExportError(f"{where} failed: {code} (bucket missing or access denied)")
    return ExportError(f"{where} failed: {type(exc).__name__}: {exc}")


class _Uploader:
    """Puts files into the client folder then the backup folder, naming the target on failure.

    :param client: the client's configuration (its bucket's connection).
    :param target: the hour's folder in the client bucket.
    :param backup: the hour's folder in the backup bucket.
    :param s3: bounded S3 clients by connection (default: built for this export).
    """

    def __init__(
        self,
        client: ClientConfig,
        target: ExportLocation,
        backup: ExportLocation,
        s3: S3Clients | None = None,
    ) -> None:
        s3 = s3 or S3Clients(ExportLimits())
        self.client = client
        self.target, self.backup = target, backup
        self.target_s3 = s3.get(client.conn_id)
        self.backup_s3 = s3.get(AWS_CONN_ID)
        #: format, compression and SSE of the client's files (SSE: client bucket only)
        self.options = client.options
        self.upload_seconds = 0.0
        self.uploaded: list[tuple[Any, str, str]] = []

    def destinations(self) -> list[tuple[Any, ExportLocation, str]]:
        """Return ``(S3 client, folder, connection id)`` of the client bucket, then the backup bucket."""
        return [
            (self.target_s3, self.target, self.client.conn_id),
            (self.backup_s3, self.backup, AWS_CONN_ID),
        ]

    def check_client_bucket(self) -> None:
        """Fail with one line naming the client, bucket and connection when the bucket is unusable.

        A bucket that answers ``HeadBucket`` with "access denied" is taken as a
        write-only bucket (cross-account delivery often grants ``PutObject`` alone):
        the export goes on and its first upload tells whether writing is allowed.
        The backup bucket is not probed here: an error there surfaces at the
        first upload, naming the bucket and the Variable.
        """
        from events_pipeline.common.s3 import check_bucket

        try:
            check_bucket(
                self.target_s3,
                self.target.bucket,
                what=f"client {self.client.client_id!r} export_bucket",
                conn_id=self.client.conn_id,
            )
        except SettingError as exc:
            if error_code(exc.__cause__) not in ACCESS_DENIED:
                raise
            log.info(
                "export client=%s: HeadBucket on s3://%s denied through connection %r: taken as a "
                "write-only bucket (PutObject alone); the first upload tells whether writing is allowed",
                self.client.client_id,
                self.target.bucket,
                self.client.conn_id,
            )

    @property
    def copies_server_side(self) -> bool:
        """Whether the client bucket is reached with the backup bucket's credentials (``aws_default``).

        Then each part is uploaded once, to the backup bucket, and S3 copies it into the
        client bucket (CopyObject: no second upload of the bytes). A client bucket with
        its own connection gets its own upload.
        """
        return self.client.conn_id == AWS_CONN_ID

    def upload_file(self, path: Path, info: ExportedFile) -> None:
        """Put one finished part into both folders.

        Client bucket first, then the backup bucket; with :attr:`copies_server_side`, the
        backup bucket first, then a server-side copy into the client bucket.

        :param path: the local part file.
        :param info: the part's name, rows, size and SHA-256 (stored as object metadata).
        :raises ExportError: an upload failed (names the client, bucket, key and connection).
        """
        started = time.monotonic()
        order = self.destinations()
        if self.copies_server_side:
            order.reverse()
        for s3, loc, conn_id in order:
            key = loc.key(info.key)
            extra = {
                "ContentType": self.options.content_type,
                "Metadata": {"sha256": info.sha256},
                **(self.options.sse_args() if loc is self.target else {}),
            }
            copy_from = None
            try:
                if loc is self.target and self.copies_server_side:
                    copy_from = {"Bucket": self.backup.bucket, "Key": self.backup.key(info.key)}
                    extra["MetadataDirective"] = "REPLACE"
                    if info.bytes < SINGLE_COPY_MAX_BYTES:  # one request; the managed copy splits it
                        s3.copy_object(CopySource=copy_from, Bucket=loc.bucket, Key=key, **extra)
                    else:
                        s3.copy(copy_from, loc.bucket, key, ExtraArgs=extra)
                else:
                    s3.upload_file(str(path), loc.bucket, key, ExtraArgs=extra)
            except Exception as exc:
                raise _s3_error(exc, self.client.client_id, loc.bucket, key, conn_id) from exc
            self.uploaded.append((s3, loc.bucket, key))
            log.info(
                "export client=%s part=%s rows=%d bytes=%d -> s3://%s/%s%s",
                self.client.client_id,
                info.key,
                info.rows,
                info.bytes,
                loc.bucket,
                key,
                f" (server-side copy of s3://{copy_from['Bucket']}/{copy_from['Key']})" if copy_from else "",
            )
        self.upload_seconds += time.monotonic() - started

    def put_manifest(self, body: bytes) -> None:
        """Write ``_manifest.json`` to both folders (client bucket first).

        :param body: the manifest's bytes.
        :raises ExportError: a write failed (names the client, bucket, key and connection).
        """
        for s3, loc, conn_id in self.destinations():
            try:
                s3.put_object(
                    Bucket=loc.bucket,
                    Key=loc.manifest_key,
                    Body=body,
                    ContentType=MANIFEST_CONTENT_TYPE,
                    **(self.options.sse_args() if loc is self.target else {}),
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

    def part_names(self, s3: Any, loc: ExportLocation) -> set[str]:
        """Return the data part names in a folder (``part-NNNNN.<ext>``).

        :param s3: the S3 client of the folder's bucket.
        :param loc: the folder.
        :raises botocore.exceptions.ClientError: listing is not allowed (a write-only bucket).
        """
        names: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=f"{loc.folder}/"):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(loc.folder) + 1 :]
                if PART_RE.fullmatch(name):
                    names.add(name)
        return names

    def remove_stale_parts(self, keep: set[str], known: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Delete the data parts of the folder that the new manifest does not list.

        A client bucket that may not be listed (write-only) gets the deletes of the
        part names seen in the backup folder or recorded earlier (``known``); a delete
        that is not allowed either is logged and skipped (the manifest lists what the
        hour holds).

        :param keep: the part names the new manifest lists.
        :param known: part names earlier runs of the hour recorded (``export_runs``).
        :return: the ``s3://`` URIs removed.
        """
        from botocore.exceptions import ClientError

        backup_names = self.part_names(self.backup_s3, self.backup)
        removed = []
        for s3, loc, conn_id in self.destinations():
            try:
                names = backup_names if loc is self.backup else self.part_names(s3, loc)
            except ClientError as exc:
                if error_code(exc) not in ACCESS_DENIED:
                    raise
                names = backup_names | set(known)
            for name in sorted(names - keep):
                key = loc.key(name)
                try:
                    s3.delete_object(Bucket=loc.bucket, Key=key)
                except ClientError as exc:
                    if error_code(exc) not in ACCESS_DENIED:
                        raise
                    log.warning(
                        "export client=%s: stale part s3://%s/%s not deleted (DeleteObject denied through "
                        "connection %r); the manifest does not list it",
                        self.client.client_id,
                        loc.bucket,
                        key,
                        conn_id,
                    )
                    continue
                removed.append(f"s3://{loc.bucket}/{key}")
        return removed


@dataclass
class _HourExport:
    """One client's hour being exported: the connection, where it goes, and how.

    :param conn: the autocommit connection holding the client's lock.
    :param client: the client's configuration.
    :param hour: the exported hour.
    :param uploader: writes to the hour's client and backup folders.
    :param settings: Parquet size bounds.
    :param run_id: the Airflow run id, recorded in ``export_runs``.
    :param started: ``time.monotonic()`` when the export began.
    :param limits: lock wait and order window (``export/limits.py``).
    :param allow_shrink: the operator's choice that lets this run publish the hour with
        fewer rows than it held (who / why, logged and recorded), or ``None``.
    """

    conn: Any
    client: ClientConfig
    hour: HourInterval
    uploader: _Uploader
    settings: PartSettings
    run_id: str | None
    started: float
    limits: ExportLimits = field(default_factory=ExportLimits)
    allow_shrink: str | None = None

    @property
    def client_id(self) -> str:
        """The exported client's id."""
        return self.client.client_id

    @property
    def target(self) -> ExportLocation:
        """The hour's folder in the client bucket."""
        return self.uploader.target

    @property
    def backup(self) -> ExportLocation:
        """The hour's folder in the backup bucket."""
        return self.uploader.backup


@dataclass(frozen=True)
class _Written:
    """What the committed transaction wrote and marked.

    :param parts: the uploaded parts, in order.
    :param rows: rows written to the parts (the hour's rows).
    :param marked: rows newly marked ``exported`` by this run.
    :param mark_seconds: how long the marking UPDATE took.
    """

    parts: list[ExportedFile]
    rows: int
    marked: int
    mark_seconds: float

    @property
    def bytes(self) -> int:
        """Total size of the parts."""
        return sum(p.bytes for p in self.parts)


def export_client_hour(
    client_id: str,
    data_interval_start: datetime,
    data_interval_end: datetime,
    *,
    run_id: str | None = None,
    conn_id: str = EVENTS_DB_CONN_ID,
    settings: PartSettings | None = None,
    shared: SharedInputs | None = None,
    allow_shrink: str | None = None,
) -> dict[str, Any]:
    """Export one client's UTC hour to its bucket and the backup bucket (idempotent).

    :param client_id: the client to export.
    :param data_interval_start: the run's ``data_interval_start``.
    :param data_interval_end: the run's ``data_interval_end`` (exactly one hour later).
    :param run_id: the Airflow run id, recorded in ``export_runs``.
    :param conn_id: Airflow connection of the events database.
    :param settings: Parquet size bounds (default: from the Variables).
    :param shared: the Variables and S3 clients a task shares between its clients
        (default: read for this call).
    :param allow_shrink: an operator's explicit choice (who / why) that lets this run
        publish the hour with fewer rows than it already held; ``None`` refuses.
    :return: a summary (client, interval, rows, bytes, files, manifest URIs, seconds).
    :raises PermanentExportError: retrying cannot help (invalid or overlapping
        configuration, bucket missing, access denied, an hour that would shrink).
    :raises ExportError: a step failed; the retry redoes the export idempotently.
    """
    started = time.monotonic()
    hour, shared = _run_inputs(client_id, data_interval_start, data_interval_end, settings, shared)
    backup_bucket, settings = shared.backup_bucket, shared.settings
    with connect(conn_id, autocommit=True) as conn:
        client = load_client(conn, client_id)
        if client is None or not client.active:
            log.warning(
                "export client=%s hour=%s: client missing or inactive now; nothing done", client_id, hour
            )
            return {"client_id": client_id, "interval_start": hour.start.isoformat(), "skipped": "inactive"}
        uploader = _open_destinations(conn, client, hour, backup_bucket, run_id, shared)
        job = _HourExport(
            conn, client, hour, uploader, settings.with_options(uploader.options), run_id, started
        )
        job.limits, job.allow_shrink = shared.limits, allow_shrink
        try:
            with _client_lock(conn, client_id, hour, shared.limits.lock_wait_seconds):
                try:
                    return _export_locked(job)
                except Exception as exc:
                    _record_failure(conn, client_id, hour, run_id, exc)
                    raise
        except ClientBusyError as exc:
            _record_failure(conn, client_id, hour, run_id, exc)
            raise


def _run_inputs(
    client_id: str,
    start: datetime,
    end: datetime,
    settings: PartSettings | None,
    shared: SharedInputs | None = None,
) -> tuple[HourInterval, SharedInputs]:
    """Return the run's hour and the shared inputs (Variables read now unless given).

    :param client_id: the client, for the message.
    :param start: the run's ``data_interval_start``.
    :param end: the run's ``data_interval_end``.
    :param settings: size bounds given by the caller (default: from the Variables).
    :param shared: inputs the caller already read, or ``None``.
    :raises PermanentExportError: the interval is not one UTC hour, or a Variable is
        missing or invalid.
    """
    try:
        hour = hour_of(start, end)
        return hour, shared or shared_inputs(settings)
    except (SettingError, ValueError) as exc:  # IntervalError is a ValueError
        raise PermanentExportError(f"export client={client_id}: {exc}") from exc


def _open_destinations(
    conn: Any,
    client: ClientConfig,
    hour: HourInterval,
    backup_bucket: str,
    run_id: str | None,
    shared: SharedInputs | None = None,
) -> _Uploader:
    """Validate the client's folders and reach its bucket; record the failure in ``export_runs`` if not.

    :param conn: an autocommit connection to the events database.
    :param client: the client's configuration.
    :param hour: the exported hour.
    :param backup_bucket: the backup bucket.
    :param run_id: the Airflow run id.
    :param shared: the landing bucket and the bounded S3 clients (default: read now).
    :raises PermanentExportError: invalid or overlapping configuration, bucket missing
        or access denied (names client and hour).
    :raises ServiceUnreachableError: the S3 endpoint cannot be reached.
    """
    try:
        landing_bucket = shared.landing_bucket if shared else None
        target, backup = resolve_locations(conn, client, hour, backup_bucket, landing_bucket)
        uploader = _Uploader(client, target, backup, shared.s3 if shared else None)
        uploader.check_client_bucket()
    except (TenantIsolationError, SettingError) as exc:
        _record_failure(conn, client.client_id, hour, run_id, exc)
        raise PermanentExportError(f"export client={client.client_id} hour={hour}: {exc}") from exc
    except ServiceUnreachableError as exc:
        _record_failure(conn, client.client_id, hour, run_id, exc)
        raise
    return uploader


@contextmanager
def _client_lock(conn: Any, client_id: str, hour: HourInterval, wait_seconds: float = 30) -> Iterator[None]:
    """Hold the client's export lock (:func:`client_lock_name`) for the block.

    One export of a client at a time (any hour): the run decision and the
    marking of one hour never interleave with another hour's, so a row is never
    exported by two hours. Taken outside any transaction (an advisory lock taken
    inside would come after the snapshot).

    :param conn: an autocommit connection, not in a transaction.
    :param client_id: the client.
    :param hour: the exported hour, for the message.
    :param wait_seconds: the longest wait for another export of the client
        (``events_export_client_lock_wait_seconds``): a short one, so a stuck export of
        this client fails this one (retried later) instead of holding a whole group.
    :raises ClientBusyError: the lock was not granted within ``wait_seconds``.
    """
    with ExitStack() as stack:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(wait_seconds * 1000)}ms",))
        try:
            stack.enter_context(advisory_lock(conn, client_lock_name(client_id)))
        except psycopg_errors.LockNotAvailable as exc:
            raise ClientBusyError(
                f"export client={client_id} hour={hour}: another export of this client (another hour's "
                f"run) still holds its lock after {wait_seconds:g} s "
                "(events_export_client_lock_wait_seconds); this client is retried later"
            ) from exc
        conn.execute("RESET lock_timeout")
        yield


def _export_locked(job: _HourExport) -> dict[str, Any]:
    """Export the hour under the client's lock: decide, write and mark, publish, record.

    :param job: the hour being exported.
    :return: the summary :func:`export_client_hour` returns.
    """
    job.conn.execute(
        load_sql("export/record_space.sql"),
        {"client_id": job.client_id, "bucket": job.target.bucket, "prefix": job.client.export_prefix},
    )
    run = begin_run(
        job.conn, job.client_id, job.hour, job.run_id, order_window_hours=job.limits.order_window_hours
    )
    params = _params(job.client_id, job.hour, claim=run["claim"])
    log.info(
        "export client=%s hour=%s: claim=%s (published=%s)",
        job.client_id,
        job.hour,
        run["claim"],
        run["published"],
    )
    if _published_rows_gone(job, run, params):
        return {
            "client_id": job.client_id,
            "interval_start": job.hour.start.isoformat(),
            "skipped": "published-rows-gone",
        }
    _refuse_to_shrink(job, run, params)
    written = _write_hour(job, run, params)
    # Committed: the rows are in the hour. Publish the manifest last (a crash
    # before it leaves no manifest; the retry rewrites the same rows).
    _publish(job, written.parts, known=_recorded_part_names(run), first_attempt=run["first_attempt"])
    duration_ms = _finish_run(job, written)
    return _summary(job, run, written, duration_ms)


def _published_rows_gone(job: _HourExport, run: dict[str, Any], params: dict[str, Any]) -> bool:
    """Tell whether a published hour lost rows since (retention, erasure): then it is left as published.

    :param job: the hour being exported.
    :param run: what :func:`begin_run` decided.
    :param params: the statements' parameters.
    """
    if not run["published"] or run["recorded_rows"] is None:
        return False
    remaining = job.conn.execute(load_sql("export/count_claimed.sql"), params).fetchone()[0]
    if remaining == run["recorded_rows"]:
        return False
    if job.allow_shrink:
        _log_shrink(job, run["recorded_rows"], remaining)
        return False
    log.warning(
        "export client=%s hour=%s: published with %d rows, %d remain in events_log (retention or "
        "erasure removed some); the published objects are left untouched at %s",
        job.client_id,
        job.hour,
        run["recorded_rows"],
        remaining,
        job.target.uri(MANIFEST_NAME),
    )
    return True


def _refuse_to_shrink(job: _HourExport, run: dict[str, Any], params: dict[str, Any]) -> None:
    """Fail when an unpublished hour whose marking committed has lost rows since.

    Its parts are in both buckets (uploaded before the commit) without a manifest. A
    run now would write the hour without the rows removed since (retention, erasure)
    and delete the parts they were in: it shrinks what was delivered. Refused unless
    an operator chose it (``allow_shrink``, logged and recorded).

    :param job: the hour being exported.
    :param run: what :func:`begin_run` decided (``committed_rows``).
    :param params: the statements' parameters.
    :raises PermanentExportError: the hour would shrink (names client, hour, both counts,
        the parts and how to allow it); recorded in ``export_runs.error``.
    """
    committed = run["committed_rows"]
    if run["published"] or committed is None:
        return
    remaining = job.conn.execute(load_sql("export/count_claimed.sql"), params).fetchone()[0]
    if remaining >= committed:
        return
    if job.allow_shrink:
        _log_shrink(job, committed, remaining)
        return
    parts = ", ".join(f["key"] for f in run["committed_files"] or []) or "none"
    raise PermanentExportError(
        f"export client={job.client_id} hour={job.hour}: refused to shrink the hour: its marking committed "
        f"{committed} rows in parts [{parts}] (uploaded to s3://{job.target.bucket}/{job.target.folder}/ and "
        f"s3://{job.backup.bucket}/{job.backup.folder}/, no manifest yet) but only {remaining} remain in "
        "events_log (removed by retention or erasure since); rewriting now would delete delivered data. "
        "Nothing was changed. To publish the hour with the remaining rows, trigger events_export for this "
        "client and hour with allow_shrink (docs/runbook.md#events_export)"
    )


def _log_shrink(job: _HourExport, held: int, remaining: int) -> None:
    """Log and record the operator's choice to publish an hour with fewer rows than it held.

    :param job: the hour being exported (``allow_shrink`` says who / why).
    :param held: the rows the hour held (committed or published).
    :param remaining: the rows left in ``events_log``.
    """
    log.warning(
        "export client=%s hour=%s: SHRINKING the hour from %d to %d rows, parts not listed by the new "
        "manifest are deleted from s3://%s/%s/ and s3://%s/%s/: operator's choice allow_shrink (%s)",
        job.client_id,
        job.hour,
        held,
        remaining,
        job.target.bucket,
        job.target.folder,
        job.backup.bucket,
        job.backup.folder,
        job.allow_shrink,
    )
    job.conn.execute(
        load_sql("export/record_shrink.sql"),
        _params(job.client_id, job.hour, shrink_allowed=f"{held} -> {remaining} rows: {job.allow_shrink}"),
    )


def _recorded_part_names(run: dict[str, Any]) -> frozenset[str]:
    """Return the part names earlier runs of the hour recorded (committed), for stale-part removal.

    :param run: what :func:`begin_run` returned.
    """
    return frozenset(f["key"] for f in run.get("committed_files") or [] if isinstance(f, dict) and "key" in f)


def _write_hour(job: _HourExport, run: dict[str, Any], params: dict[str, Any]) -> _Written:
    """Write, upload and mark the hour's rows (committed); on failure remove this attempt's parts.

    :param job: the hour being exported.
    :param run: what :func:`begin_run` decided.
    :param params: the statements' parameters.
    """
    try:
        return _read_and_mark(job, run, params)
    except Exception:
        if not run["published"]:  # a published hour's parts are the published ones: keep them
            job.uploader.discard_uploaded()
        raise


def _publish(
    job: _HourExport,
    parts: list[ExportedFile],
    known: frozenset[str] = frozenset(),
    *,
    first_attempt: bool = False,
) -> None:
    """Write the hour's manifest to both buckets, then remove parts it does not list.

    :param job: the hour being exported.
    :param parts: the parts written, in order.
    :param known: part names earlier runs recorded (for a client bucket that may not be listed).
    :param first_attempt: no earlier attempt of the hour exists: no stale part can (no listing).
    """
    manifest = build_manifest(job.client_id, job.hour, parts, options=job.uploader.options.manifest_fields())
    job.uploader.put_manifest(dump_manifest(manifest))
    removed = [] if first_attempt else job.uploader.remove_stale_parts({p.key for p in parts}, known)
    if removed:
        log.info("export client=%s hour=%s: removed stale parts %s", job.client_id, job.hour, removed)


def _finish_run(job: _HourExport, written: _Written) -> int:
    """Record the published hour in ``export_runs`` (what was written where); return its duration in ms.

    :param job: the hour being exported.
    :param written: what the transaction wrote.
    """
    from psycopg.types.json import Jsonb

    duration_ms = int((time.monotonic() - job.started) * 1000)
    files = [
        {**p.as_dict(), "client_uri": job.target.uri(p.key), "backup_uri": job.backup.uri(p.key)}
        for p in written.parts
    ]
    job.conn.execute(
        load_sql("export/finish_run.sql"),
        _params(
            job.client_id,
            job.hour,
            row_count=written.rows,
            bytes=written.bytes,
            files=Jsonb(files),
            manifest_key=job.target.uri(MANIFEST_NAME),
            backup_manifest_key=job.backup.uri(MANIFEST_NAME),
            duration_ms=duration_ms,
            run_id=job.run_id,
        ),
    )
    return duration_ms


def _summary(job: _HourExport, run: dict[str, Any], written: _Written, duration_ms: int) -> dict[str, Any]:
    """Log the published hour and return the task's summary.

    :param job: the hour being exported.
    :param run: what :func:`begin_run` decided.
    :param written: what the transaction wrote.
    :param duration_ms: the export's duration.
    """
    seconds = duration_ms / 1000
    uploader = job.uploader
    log.info(
        "export client=%s hour=%s DONE rows=%d (newly marked %d in %.2f s) bytes=%d parts=%d seconds=%.2f "
        "(upload %.2f) rows_per_s=%.0f -> %s and %s",
        job.client_id,
        job.hour,
        written.rows,
        written.marked,
        written.mark_seconds,
        written.bytes,
        len(written.parts),
        seconds,
        uploader.upload_seconds,
        written.rows / seconds if seconds else 0.0,
        job.target.uri(MANIFEST_NAME),
        job.backup.uri(MANIFEST_NAME),
    )
    return {
        "client_id": job.client_id,
        "interval_start": job.hour.start.isoformat(),
        "rows": written.rows,
        "newly_marked": written.marked,
        "bytes": written.bytes,
        "parts": len(written.parts),
        "seconds": seconds,
        "upload_seconds": round(uploader.upload_seconds, 3),
        "mark_seconds": round(written.mark_seconds, 3),
        "manifest": job.target.uri(MANIFEST_NAME),
        "backup_manifest": job.backup.uri(MANIFEST_NAME),
        "claim_mode": run["claim"],
    }


def _read_and_mark(job: _HourExport, run: dict[str, Any], params: dict[str, Any]) -> _Written:
    """In ONE REPEATABLE READ transaction: read the rows into uploaded parts, mark them, check, commit.

    :param job: the hour being exported.
    :param run: what :func:`begin_run` decided.
    :param params: the statements' parameters.
    :raises ExportError: rows of the hour changed meanwhile, or the count does not
        match (nothing marked: the retry exports again).
    """
    from events_pipeline.export.gdpr_outbound import find_untreated

    conn = job.conn
    try:
        with conn.transaction():
            # One snapshot for the read and the marking: the rows marked are exactly the rows written.
            _begin_export_transaction(conn)
            # a gdpr client's rows stored before its switch: treated on the way out (and stored so)
            untreated = find_untreated(conn, job.client_id, job.client.privacy_level, params)
            visitors = HourVisitors()  # the visitors written, for the backup visitor index
            parts, (marked, mark_seconds) = _stream_parts(
                conn,
                params,
                job.uploader,
                job.settings,
                lambda: _mark_rows(conn, params, published=run["published"]),
                untreated,
                visitors,
            )
            written = sum(p.rows for p in parts)
            untreated.write_back(conn)
            _check_written(job, params, written)
            _record_commit(job, parts, written)
            visitors.record(conn, job.client_id, job.hour.start)  # the hour's backup visitor index
    except psycopg_errors.SerializationFailure as exc:
        raise ExportError(
            f"export client={job.client_id} hour={job.hour}: rows of the hour were changed or deleted by "
            f"another transaction (erasure, GDPR sweep, archival) during the export: nothing marked, the "
            f"retry exports again ({exc.diag.message_primary})"
        ) from exc
    return _Written(parts, written, marked, mark_seconds)


def _record_commit(job: _HourExport, parts: list[ExportedFile], written: int) -> None:
    """Record in ``export_runs``, in the export's transaction, what the hour's marking commits.

    :param job: the hour being exported.
    :param parts: the parts written, in order.
    :param written: the rows they hold (= the rows in the hour).
    """
    from psycopg.types.json import Jsonb

    job.conn.execute(
        load_sql("export/record_commit.sql"),
        _params(
            job.client_id,
            job.hour,
            committed_rows=written,
            committed_files=Jsonb([p.as_dict() for p in parts]),
        ),
    )


def _begin_export_transaction(conn: Any) -> None:
    """Make the transaction just opened on ``conn`` ``REPEATABLE READ`` with :data:`READ_SETTINGS`.

    :param conn: the connection, at the start of its transaction.
    """
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    for name, value in READ_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


def _mark_rows(conn: Any, params: dict[str, Any], *, published: bool) -> tuple[int, float]:
    """Run the marking UPDATE (``mark_rows.sql``) in the export's transaction.

    :param conn: the connection of the export's transaction.
    :param params: the statements' parameters.
    :param published: the hour is already published (its rows were marked then: nothing to do).
    :return: ``(rows marked, seconds taken)``.
    """
    if published:
        return 0, 0.0
    started = time.monotonic()
    rowcount = conn.execute(load_sql("export/mark_rows.sql"), params).rowcount
    return rowcount, time.monotonic() - started


def _check_written(job: _HourExport, params: dict[str, Any], written: int) -> None:
    """Fail when the parts do not hold exactly the rows the transaction put in the hour.

    :param job: the hour being exported.
    :param params: the statements' parameters.
    :param written: rows written to the parts.
    :raises ExportError: the counts differ (names client, hour and both counts).
    """
    in_hour = job.conn.execute(load_sql("export/count_claimed.sql"), params).fetchone()[0]
    if written != in_hour:
        raise ExportError(
            f"export client={job.client_id} hour={job.hour}: wrote {written} rows but the hour holds "
            f"{in_hour} (rows changed during the export?); nothing marked, retrying rewrites the hour"
        )


def _stream_parts(
    conn: Any,
    params: dict[str, Any],
    uploader: _Uploader,
    settings: PartSettings,
    mark: Callable[[], T],
    untreated: Untreated | None = None,
    visitors: HourVisitors | None = None,
) -> tuple[list[ExportedFile], T]:
    """Read the selected rows into Parquet parts uploaded to both buckets, and run ``mark`` meanwhile.

    Runs inside the caller's ``REPEATABLE READ`` transaction on ``conn``. The
    rows are read through a second connection in this transaction's snapshot
    (ADBC), so ``mark`` (the marking UPDATE on ``conn``, in a thread) runs at the
    same time as the read, encode and upload: its changes stay uncommitted
    (invisible to the reader and to everyone) until the caller commits, after
    every upload. When the read or an upload fails, the marking is cancelled.

    :param conn: the connection of the export's transaction.
    :param params: the statements' parameters.
    :param uploader: uploads each finished part.
    :param settings: Parquet size bounds.
    :param mark: the marking, run in a thread on ``conn``.
    :param untreated: rows of a GDPR client to be written with the GDPR treatment
        (``export/gdpr_outbound.py``), or ``None``.
    :param visitors: collects the distinct visitor ids written (the backup visitor index), or ``None``.
    :return: ``(parts, what mark returned)``.
    """
    from psycopg import ClientCursor

    snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
    query = ClientCursor(conn).mogrify(load_sql("export/select_rows.sql").strip().rstrip(";"), params)
    conninfo = _conninfo(conn)
    marking_done = threading.Event()

    def marking() -> T:
        """Run ``mark``; tell :func:`_stop_marking` once it has returned or raised."""
        try:
            return mark()
        finally:
            marking_done.set()

    with tempfile.TemporaryDirectory(prefix=f"export-{params['client_id']}-") as workdir:
        marker = BackgroundCall(marking, name="export-mark")
        batches = prefetched(iter_adbc_batches(conninfo, snapshot, query), PREFETCH_DEPTH, "export-prefetch")
        try:
            # closing(): on a failure the reading thread stops (and closes its connection) now
            with closing(batches):
                rows = untreated.rewrite(batches) if untreated else batches
                rows = visitors.collect(rows) if visitors is not None else rows
                parts = write_parts(rows, Path(workdir), uploader.upload_file, settings)
        except BaseException as exc:
            cause = _stop_marking(conn, marker, marking_done)
            if cause is not None:
                # the marking failed first (its failed transaction also voids the snapshot the
                # reader imports): its error is the cause to report
                raise cause from exc
            raise
        return parts, marker.join()


def _stop_marking(conn: Any, marker: BackgroundCall[Any], done: threading.Event) -> BaseException | None:
    """After a failed read: cancel the marking if it still runs, wait for it, return its own error.

    :param conn: the connection the marking runs on.
    :param marker: the marking's thread.
    :param done: set once the marking returned or raised.
    :return: the marking's exception when it failed by itself (not by the cancel), else ``None``.
    """
    if not done.is_set():
        conn.cancel_safe()
    try:
        marker.join()
    except psycopg_errors.QueryCanceled:
        return None
    except BaseException as exc:  # noqa: BLE001 - handed back to be raised with the read's error
        return exc
    return None


def _conninfo(conn: Any) -> str:
    """Return the libpq connection string of ``conn`` (password included) for the second, reading
    connection, with :data:`READ_SETTINGS` as its session settings.

    :param conn: the export's connection.
    """
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


def _record_failure(
    conn: Any, client_id: str, hour: HourInterval, run_id: str | None, exc: BaseException
) -> None:
    """Log a failed attempt and record it in ``export_runs`` (best effort).

    :param conn: an autocommit connection (a failed transaction on it is rolled back first).
    :param client_id: the client.
    :param hour: the hour.
    :param run_id: the Airflow run id.
    :param exc: the error, recorded as ``Type: message`` (one line, at most 2,000 characters).
    """
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
