"""GDPR erasure requests: delete a visitor's events and purge them from the backup exports.

For each client with pending rows in ``gdpr_erasure_requests`` (all its
visitors at once, so the client's data is read once per run):

1. the visitors' events are deleted from ``events_log`` (one statement; the
   counts are added to each request in the same transaction);
2. every Parquet object under the client's backup prefix
   (``s3://{backup}/{client_id}/``, :func:`~events_pipeline.export.keys.backup_prefix`)
   is read (the ``visitor_id`` column first; the whole object only when a visitor
   is in it), the visitors' rows are filtered out and the object is rewritten
   under the same key with the same schema (zstd); the folder's ``_manifest.json``
   gets the new ``rows``/``bytes``/``sha256`` of the file and the new
   ``row_count`` (the export's manifest code edits and serialises it). Nothing
   else in either changes;
3. the request records ``rows_deleted``, ``objects_rewritten`` (backup keys and
   rows removed), ``client_objects`` (the matching objects in the client's own
   bucket, located with the export's key layout; they are the client's to act
   on and are not touched), status and times.

Safe to re-run: deletes and filters are idempotent, an object is recorded in
the request *before* it is rewritten, and a manifest whose entry no longer
matches its object (a crash between the two writes) is corrected on the next
run. Requests stay ``processing``/``pending`` until everything is done.
"""

from __future__ import annotations

import io
import logging
import posixpath
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from events_pipeline.common.db import advisory_lock, as_dict, as_dicts, connect, load_sql
from events_pipeline.common.errors import PipelineError
from events_pipeline.common.settings import VAR_BACKUP_BUCKET, get_setting
from events_pipeline.export.keys import (
    MANIFEST_NAME,
    ExportLocation,
    TenantIsolationError,
    backup_location,
    backup_prefix,
    client_location,
    hour_of_folder,
)
from events_pipeline.export.manifest import (
    CONTENT_TYPE,
    ManifestError,
    file_entries,
    manifest_bytes,
    read_manifest,
    update_file_entry,
)
from events_pipeline.export.parquet_parts import describe_parquet

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

LOCK_NAME = "events_pipeline.erasure"
#: After this many attempts a request that keeps failing is marked ``failed``.
MAX_ATTEMPTS = 5


class ErasureError(PipelineError):
    """A request could not be completed (names the client and the object at fault)."""


@dataclass
class Request:
    """One erasure request being processed.

    :param request_id: its id.
    :param client_id: the client.
    :param visitor_id: the visitor to erase.
    :param objects: backup objects rewritten for it, by key.
    :param client_objects: the matching client-bucket objects.
    """

    request_id: int
    client_id: str
    visitor_id: str
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    client_objects: dict[str, dict[str, Any]] = field(default_factory=dict)


def _list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Return every key under ``prefix`` in ``bucket`` (all pages).

    :param s3: a boto3 S3 client.
    :param bucket: the bucket.
    :param prefix: the key prefix.
    """
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def filter_parquet(data: bytes, visitors: set[str]) -> tuple[bytes, Counter[str], int] | None:
    """Remove the rows of ``visitors`` from one Parquet object.

    :param data: the object's bytes.
    :param visitors: visitor ids to remove.
    :return: ``None`` when no row matches, else ``(new_bytes, removed_per_visitor, rows_left)``.
        The schema (with its metadata) is kept; compression is zstd.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    value_set = pa.array(sorted(visitors), type=pa.string())
    ids = pq.read_table(io.BytesIO(data), columns=["visitor_id"]).column("visitor_id")
    if ids.type != pa.string():
        ids = ids.cast(pa.string())
    hit = pc.fill_null(pc.is_in(ids, value_set=value_set), False)
    if not pc.any(hit).as_py():
        return None
    removed = Counter(str(v) for v in pc.filter(ids, hit).to_pylist())
    table = pq.read_table(io.BytesIO(data))
    column = table.column("visitor_id")
    if column.type != pa.string():
        column = column.cast(pa.string())
    kept = table.filter(pc.invert(pc.fill_null(pc.is_in(column, value_set=value_set), False)))
    out = io.BytesIO()
    pq.write_table(kept, out, compression="zstd")
    return out.getvalue(), removed, kept.num_rows


def _client_space(conn: psycopg.Connection, client_id: str) -> tuple[str, str] | None:
    """Return the client's ``(export_bucket, export_prefix)``, or ``None`` when it does not exist.

    :param conn: an open connection.
    :param client_id: the client.
    """
    row = as_dict(conn.execute(load_sql("export/client_config.sql"), {"client_id": client_id}))
    return (row["export_bucket"], row["export_prefix"]) if row else None


def _save(conn: psycopg.Connection, req: Request) -> None:
    """Store the request's audit lists (sorted by key).

    :param conn: an autocommit connection.
    :param req: the request.
    """
    from psycopg.types.json import Jsonb

    conn.execute(
        load_sql("erasure/record_objects.sql"),
        {
            "request_id": req.request_id,
            "objects": Jsonb(sorted(req.objects.values(), key=lambda o: o["key"])),
            "client_objects": Jsonb(sorted(req.client_objects.values(), key=lambda o: o["key"])),
        },
    )


def _load_previous(conn: psycopg.Connection, req: Request) -> None:
    """Load the audit lists an earlier, interrupted attempt of the request recorded.

    :param conn: an open connection.
    :param req: the request (its lists are filled).
    """
    row = as_dict(conn.execute(load_sql("erasure/previous_objects.sql"), {"request_id": req.request_id}))
    if row:
        for o in row["objects_rewritten"] or []:
            req.objects[o["key"]] = o
        for o in row["client_objects"] or []:
            req.client_objects[o["key"]] = o


def purge_backup(
    conn: psycopg.Connection, s3: Any, bucket: str, client_id: str, requests: list[Request]
) -> dict[str, int]:
    """Rewrite every backup object of ``client_id`` that holds a requested visitor.

    :param conn: an open autocommit connection (request audit lists are saved as it goes).
    :param s3: a boto3 S3 client.
    :param bucket: the backup bucket.
    :param client_id: the client whose backup prefix (``{client_id}/``) is scanned.
    :param requests: the client's requests being processed.
    :return: counters: objects read, objects rewritten, manifests updated, rows removed.
    :raises ErasureError: a backup object or manifest cannot be read (names it).
    """
    return _BackupPurge(conn, s3, bucket, client_id, requests).run()


class _BackupPurge:
    """One client's pass over its backup folders, for all its requested visitors at once.

    :param conn: an open autocommit connection.
    :param s3: a boto3 S3 client.
    :param bucket: the backup bucket.
    :param client_id: the client.
    :param requests: the client's requests being processed.
    """

    def __init__(
        self, conn: psycopg.Connection, s3: Any, bucket: str, client_id: str, requests: list[Request]
    ) -> None:
        self.conn, self.s3, self.bucket, self.client_id = conn, s3, bucket, client_id
        self.requests = requests
        self.by_visitor: dict[str, list[Request]] = defaultdict(list)
        for r in requests:
            self.by_visitor[r.visitor_id].append(r)
        self.visitors = set(self.by_visitor)
        self.client_space = _client_space(conn, client_id)
        self.stats: Counter[str] = Counter()
        self._client_folders: dict[str, ExportLocation | None] = {}

    def run(self) -> dict[str, int]:
        """Purge every folder of the client's backup prefix; return the counters."""
        for folder, keys in self._folders():
            self._purge_folder(folder, keys)
        return dict(self.stats)

    def _folders(self) -> list[tuple[str, list[str]]]:
        """Return the client's backup folders with their keys, sorted by folder."""
        try:
            prefix = backup_prefix(self.client_id)
        except TenantIsolationError as exc:
            log.warning("erasure: client %r has no backup folder (%s); nothing to purge", self.client_id, exc)
            return []
        folders: dict[str, list[str]] = defaultdict(list)
        for key in _list_keys(self.s3, self.bucket, prefix):
            folders[posixpath.dirname(key)].append(key)
        return sorted(folders.items())

    def _purge_folder(self, folder: str, keys: list[str]) -> None:
        """Filter every Parquet object of one folder; bring its manifest in line with the objects.

        :param folder: the folder (an hour of the client).
        :param keys: every key in it.
        """
        manifest_key = posixpath.join(folder, MANIFEST_NAME)
        manifest = self._read_manifest(manifest_key) if manifest_key in keys else None
        entries = file_entries(manifest, manifest_key) if manifest is not None else {}
        manifest_changed = False
        for key in sorted(k for k in keys if k.endswith(".parquet")):
            data, rewritten = self._purge_object(folder, key)
            entry = entries.get(key)
            if manifest is not None and entry is not None:
                manifest_changed |= self._refresh_entry(manifest, manifest_key, entry, key, data, rewritten)
        if manifest is not None and manifest_changed:
            self._write_manifest(folder, manifest_key, manifest)

    def _read_manifest(self, manifest_key: str) -> dict[str, Any]:
        """Read a backup manifest as it is (not validated: older writers' ``files[].key`` are absolute).

        :param manifest_key: its key.
        :raises ErasureError: not a JSON object (names the object).
        """
        body = self.s3.get_object(Bucket=self.bucket, Key=manifest_key)["Body"].read()
        try:
            return read_manifest(body, validate=False)
        except ManifestError as exc:
            raise ErasureError(
                f"erasure: client {self.client_id}: cannot read backup manifest "
                f"s3://{self.bucket}/{manifest_key}: {exc}"
            ) from exc

    def _purge_object(self, folder: str, key: str) -> tuple[bytes, bool]:
        """Remove the visitors' rows from one object: record it in the requests, then rewrite it.

        :param folder: the object's folder.
        :param key: the object's key.
        :return: ``(the object's bytes now, whether it was rewritten)``.
        :raises ErasureError: the object is not readable Parquet (names it).
        """
        data = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        self.stats["objects_read"] += 1
        try:
            filtered = filter_parquet(data, self.visitors)
        except Exception as exc:
            raise ErasureError(
                f"erasure: client {self.client_id}: cannot read backup object s3://{self.bucket}/{key}: {exc}"
            ) from exc
        if filtered is None:
            return data, False
        new_data, removed, rows_left = filtered
        self._record_removal(folder, key, removed)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=new_data)
        self.stats["objects_rewritten"] += 1
        self.stats["rows_removed"] += sum(removed.values())
        log.info(
            "erasure: client %s: rewrote s3://%s/%s: %d row(s) removed, %d left, %d -> %d bytes",
            self.client_id,
            self.bucket,
            key,
            sum(removed.values()),
            rows_left,
            len(data),
            len(new_data),
        )
        return new_data, True

    def _record_removal(self, folder: str, key: str, removed: Counter[str]) -> None:
        """Add the object (and its client-bucket twin) to each concerned request, and save it.

        Recorded before the object is rewritten: a crash leaves no unrecorded rewrite.

        :param folder: the object's folder.
        :param key: the object's key.
        :param removed: rows removed per visitor.
        """
        backup_uri = f"s3://{self.bucket}/{key}"
        client_uri = self._client_uri(folder, posixpath.basename(key))
        for visitor, n in removed.items():
            for req in self.by_visitor.get(visitor, []):
                prev = req.objects.get(key, {}).get("rows_removed", 0)
                req.objects[key] = {"key": backup_uri, "rows_removed": prev + n}
                if client_uri:
                    req.client_objects[client_uri] = {"key": client_uri, "backup_key": backup_uri}
                _save(self.conn, req)

    def _refresh_entry(
        self,
        manifest: dict[str, Any],
        manifest_key: str,
        entry: dict[str, Any],
        key: str,
        data: bytes,
        rewritten: bool,
    ) -> bool:
        """Make the manifest entry of an object describe its current bytes; return whether it changed.

        :param manifest: the folder's manifest.
        :param manifest_key: its key, for the message.
        :param entry: the object's ``files[]`` entry.
        :param key: the object's key.
        :param data: its bytes now.
        :param rewritten: whether this run rewrote it (else a changed entry was stale).
        """
        if not update_file_entry(manifest, entry, describe_parquet(str(entry.get("key", "")), data)):
            return False
        if not rewritten:
            log.warning(
                "erasure: client %s: manifest s3://%s/%s was stale for %s "
                "(crash after a rewrite?); corrected",
                self.client_id,
                self.bucket,
                manifest_key,
                key,
            )
        return True

    def _write_manifest(self, folder: str, manifest_key: str, manifest: dict[str, Any]) -> None:
        """Write the folder's edited manifest back; add its client-bucket twin to the concerned requests.

        :param folder: the folder.
        :param manifest_key: the manifest's key.
        :param manifest: the edited manifest (serialised like the export writes it).
        """
        self.s3.put_object(
            Bucket=self.bucket, Key=manifest_key, Body=manifest_bytes(manifest), ContentType=CONTENT_TYPE
        )
        self.stats["manifests_updated"] += 1
        client_uri = self._client_uri(folder, MANIFEST_NAME)
        if not client_uri:
            return
        backup_uri = f"s3://{self.bucket}/{manifest_key}"
        for req in self.requests:
            if any(posixpath.dirname(k) == folder for k in req.objects):
                req.client_objects[client_uri] = {"key": client_uri, "backup_key": backup_uri}
                _save(self.conn, req)

    def _client_uri(self, folder: str, name: str) -> str | None:
        """Return the ``s3://`` URI of file ``name`` of the backup ``folder``'s hour in the client's bucket.

        ``None`` when the client no longer exists, or the folder or the client's
        configuration does not fit the export's layout (logged once per folder).

        :param folder: a backup folder of the client.
        :param name: a file name in it.
        """
        if folder not in self._client_folders:
            self._client_folders[folder] = self._client_folder(folder)
        location = self._client_folders[folder]
        return location.uri(name) if location else None

    def _client_folder(self, folder: str) -> ExportLocation | None:
        """Return the client-bucket folder of the same hour as backup ``folder`` (see :meth:`_client_uri`).

        :param folder: a backup folder of the client.
        """
        if self.client_space is None:
            return None
        bucket, prefix = self.client_space
        try:
            hour = hour_of_folder(folder)
            if backup_location(self.client_id, self.bucket, hour).folder != folder:
                raise ValueError(f"it is not the backup folder of hour {hour}")
            return client_location(self.client_id, bucket, prefix, hour)
        except (ValueError, TenantIsolationError) as exc:
            log.warning(
                "erasure: client %s: no client-bucket object recorded for backup folder s3://%s/%s: %s",
                self.client_id,
                self.bucket,
                folder,
                exc,
            )
            return None


def run_erasure(conn: psycopg.Connection, s3: Any, backup_bucket: str) -> dict[str, Any]:
    """Process every pending erasure request.

    :param conn: an open connection (switched to autocommit).
    :param s3: a boto3 S3 client for the backup bucket.
    :param backup_bucket: the backup bucket (Variable ``events_backup_bucket``).
    :return: per client: requests, rows deleted, objects rewritten, final status.
    :raises ErasureError: a client's requests failed (the others were processed).
    """
    conn.autocommit = True
    with advisory_lock(conn, LOCK_NAME, wait=False) as acquired:
        if not acquired:
            log.warning("erasure: another run holds the erasure lock; nothing done this time")
            return {}
        summary: dict[str, Any] = {}
        failures: list[str] = []
        for client_id, reqs in sorted(_claim_requests(conn).items()):
            try:
                summary[client_id] = _process_client(conn, s3, backup_bucket, client_id, reqs)
            except Exception as exc:  # noqa: BLE001 - recorded on the requests, re-raised below
                failures.append(_record_client_failure(conn, client_id, reqs, exc))
        if failures:
            raise ErasureError("erasure failed for " + "; ".join(failures))
        return summary


def _claim_requests(conn: psycopg.Connection) -> dict[str, list[Request]]:
    """Mark every pending (or interrupted) request ``processing``; return them by client.

    :param conn: an autocommit connection.
    """
    claimed = as_dicts(conn.execute(load_sql("erasure/claim_requests.sql")))
    by_client: dict[str, list[Request]] = defaultdict(list)
    for row in claimed:
        req = Request(int(row["request_id"]), row["client_id"], row["visitor_id"])
        _load_previous(conn, req)
        by_client[req.client_id].append(req)
    log.info("erasure: %d request(s) for %d client(s)", len(claimed), len(by_client))
    return by_client


def _record_client_failure(
    conn: psycopg.Connection, client_id: str, reqs: list[Request], exc: Exception
) -> str:
    """Record a client's failure on its requests (``failed`` after :data:`MAX_ATTEMPTS`, else ``pending``).

    :param conn: an autocommit connection.
    :param client_id: the client.
    :param reqs: its requests.
    :param exc: the error.
    :return: one line for the run's error: the client and the error.
    """
    message = f"{type(exc).__name__}: {exc}"
    ids = [r.request_id for r in reqs]
    attempts = conn.execute(load_sql("erasure/request_attempts.sql"), {"request_ids": ids}).fetchone()[0]  # type: ignore[index]
    status = "failed" if (attempts or 0) >= MAX_ATTEMPTS else "pending"
    conn.execute(
        load_sql("erasure/finish_request.sql"),
        {"status": status, "error": message[:2000], "request_ids": ids},
    )
    log.error("erasure: client %s: %s (requests %s now %s)", client_id, message, ids, status)
    return f"client {client_id}: {message}"


def _process_client(
    conn: psycopg.Connection, s3: Any, bucket: str, client_id: str, reqs: list[Request]
) -> dict[str, Any]:
    """Erase a client's requested visitors: events first, then the backup objects; finish the requests.

    :param conn: an autocommit connection.
    :param s3: a boto3 S3 client.
    :param bucket: the backup bucket.
    :param client_id: the client.
    :param reqs: its requests.
    :return: the client's summary (requests, status, rows deleted, purge counters).
    """
    t0 = time.monotonic()
    deleted = _delete_events(conn, client_id, reqs)
    deleted_at = datetime.now(UTC)
    scan_started = datetime.now(UTC)
    stats = purge_backup(conn, s3, bucket, client_id, reqs)
    ids = [r.request_id for r in reqs]
    status = _finish_requests(conn, client_id, ids, deleted_at=deleted_at, scan_started=scan_started)
    log.info(
        "erasure: client %s: requests %s %s: rows deleted %d, backup objects read %d, rewritten %d, "
        "manifests updated %d, rows purged from backups %d, %.2fs",
        client_id,
        ids,
        status,
        sum(deleted.values()),
        stats.get("objects_read", 0),
        stats.get("objects_rewritten", 0),
        stats.get("manifests_updated", 0),
        stats.get("rows_removed", 0),
        time.monotonic() - t0,
    )
    return {"requests": ids, "status": status, "rows_deleted": sum(deleted.values()), **stats}


def _delete_events(conn: psycopg.Connection, client_id: str, reqs: list[Request]) -> Counter[str]:
    """Delete the requested visitors' events of the client; add the counts to the requests (one transaction).

    A visitor requested twice is counted on its first request only.

    :param conn: an autocommit connection.
    :param client_id: the client.
    :param reqs: its requests.
    :return: rows deleted per visitor.
    """
    visitors = sorted({r.visitor_id for r in reqs})
    with conn.transaction():
        deleted = Counter(
            r[0]
            for r in conn.execute(
                load_sql("erasure/delete_visitor_rows.sql"), {"client_id": client_id, "visitors": visitors}
            )
        )
        seen: set[str] = set()
        for req in reqs:
            n = deleted.get(req.visitor_id, 0) if req.visitor_id not in seen else 0
            seen.add(req.visitor_id)
            conn.execute(load_sql("erasure/add_rows_deleted.sql"), {"request_id": req.request_id, "n": n})
    log.info(
        "erasure: client %s: %d event row(s) deleted for %d visitor(s)",
        client_id,
        sum(deleted.values()),
        len(visitors),
    )
    return deleted


def _finish_requests(
    conn: psycopg.Connection,
    client_id: str,
    ids: list[int],
    *,
    deleted_at: datetime,
    scan_started: datetime,
) -> str:
    """Mark the requests ``done``, or leave them ``pending`` when an export raced the backup scan.

    :param conn: an autocommit connection.
    :param client_id: the client.
    :param ids: its request ids.
    :param deleted_at: when the events were deleted.
    :param scan_started: when the backup scan began.
    :return: the status given.
    """
    racing = conn.execute(
        load_sql("erasure/running_exports.sql"),
        {"client_id": client_id, "deleted_at": deleted_at, "scan_started_at": scan_started},
    ).fetchone()[0]  # type: ignore[index]
    if racing:
        status = "pending"
        error: str | None = f"an export of client {client_id} ran during the backup scan; re-checked next run"
        log.warning("erasure: %s (requests %s stay pending)", error, ids)
    else:
        status, error = "done", None
    conn.execute(
        load_sql("erasure/finish_request.sql"), {"status": status, "error": error, "request_ids": ids}
    )
    return status


def run() -> dict[str, Any]:
    """Task entry point: process pending requests with the backup bucket from Airflow Variables."""
    from events_pipeline.common.s3 import check_bucket, s3_client

    bucket = str(get_setting(VAR_BACKUP_BUCKET))
    client = s3_client()
    check_bucket(client, bucket, what=f"Variable {VAR_BACKUP_BUCKET}")
    with connect() as conn:
        return run_erasure(conn, client, bucket)
