"""Purge requested visitors from a client's exports in the backup bucket, folder by folder.

A backup folder is one exported hour of one client
(``s3://{backup}/{client_id}/dt=YYYY-MM-DD/hour=HH/``, :mod:`events_pipeline.export.keys`).
Each data part of the folder (Parquet, or JSON Lines for clients exporting them) is
read; a part holding a visitor is written again under the same key without the
visitor's rows (Parquet: same schema and metadata, zstd; JSON Lines: the other lines
byte for byte, compressed as before), and the folder's ``_manifest.json`` gets the
file's new ``rows``, ``bytes``, ``sha256`` and the new ``row_count`` (the export's
manifest code edits and serialises it; nothing else changes).

Which folders: the caller names them - the hours that held the visitor
(``gdpr_erasure_hours``) - so the cost follows the visitor's data, not the client's
history. Without names (``folders=None``) every folder of the client is read: the
original design, kept for the benchmark's side-by-side comparison.

The same hour in the client's own bucket (``s3://{export_bucket}/{export_prefix}/...``)
is the client's: its objects are recorded as ``listed_for_client`` in the audit
trail, never touched. Every rewritten part is recorded before it is written; a
manifest whose entry no longer matches its object (a crash between the two writes)
is corrected by the next pass.
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from events_pipeline.common.db import as_dict, load_sql
from events_pipeline.common.errors import PipelineError
from events_pipeline.erasure.audit import AuditTrail
from events_pipeline.erasure.landing_objects import drop_older_versions
from events_pipeline.erasure.matching import Wanted
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
    ExportedFile,
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

#: Endings of JSON Lines data parts (``export/formats.py``); everything else but ``.parquet`` is not a part.
JSONL_ENDINGS = (".jsonl", ".jsonl.gz", ".jsonl.zst")


class ErasureError(PipelineError):
    """A request could not be completed (names the client, the request and the object at fault)."""


class UnreadableBackupError(ErasureError):
    """A backup object or manifest is not readable: retrying cannot help until someone looks at it."""


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


def filter_jsonl(name: str, data: bytes, visitors: set[str]) -> tuple[bytes, Counter[str], int] | None:
    """Remove the lines of ``visitors`` from one JSON Lines part (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``).

    :param name: the part's file name (its ending gives the compression).
    :param data: the object's bytes.
    :param visitors: visitor ids to remove (a line's ``visitor_id`` member).
    :return: ``None`` when no line matches, else ``(new_bytes, removed_per_visitor, lines_left)``;
        the other lines keep their bytes, the whole is compressed as before.
    """
    import orjson

    from events_pipeline.export.formats import compress, decompress, file_type_of

    _, compression = file_type_of(name)
    text = decompress(data, compression or "none")
    if not any(v.encode("utf-8") in text for v in visitors):
        return None
    removed: Counter[str] = Counter()
    kept: list[bytes] = []
    for line in text.splitlines(keepends=True):
        if not line.strip():
            continue
        visitor = orjson.loads(line).get("visitor_id")
        if visitor in visitors:
            removed[visitor] += 1
        else:
            kept.append(line)
    if not removed:
        return None
    return compress(b"".join(kept), compression or "none"), removed, len(kept)


def part_kind(key: str) -> str | None:
    """Return ``parquet`` or ``jsonl`` for a data part's key, None for anything else (manifests...).

    :param key: an object key.
    """
    if key.endswith(".parquet"):
        return "parquet"
    if key.endswith(JSONL_ENDINGS):
        return "jsonl"
    return None


def describe_part(name: str, data: bytes) -> ExportedFile:
    """Describe a data part's bytes as its manifest entry lists it (rows, bytes, sha256).

    :param name: the entry's ``key``.
    :param data: the part's bytes.
    """
    if part_kind(name) == "parquet":
        return describe_parquet(name, data)
    from events_pipeline.export.formats import decompress, file_type_of

    _, compression = file_type_of(name)
    rows = sum(1 for line in decompress(data, compression or "none").splitlines() if line.strip())
    return ExportedFile(name, rows, len(data), hashlib.sha256(data).hexdigest())


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Return every key under ``prefix`` in ``bucket`` (all pages).

    :param s3: a boto3 S3 client.
    :param bucket: the bucket.
    :param prefix: the key prefix.
    """
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


class BackupPurge:
    """One client's purge of its backup folders, for all its requested visitors at once.

    :param conn: an autocommit connection (the audit trail, the client's configuration).
    :param s3: a boto3 S3 client for the backup bucket.
    :param bucket: the backup bucket.
    :param client_id: the client.
    :param wanted: the client's requests being carried out.
    """

    def __init__(
        self, conn: psycopg.Connection, s3: Any, bucket: str, client_id: str, wanted: list[Wanted]
    ) -> None:
        self.conn, self.s3, self.bucket, self.client_id = conn, s3, bucket, client_id
        self.audit = AuditTrail(conn)
        self.by_visitor: dict[str, list[int]] = defaultdict(list)
        for w in wanted:
            self.by_visitor[w.visitor_id].append(w.request_id)
        self.visitors = set(self.by_visitor)
        row = as_dict(conn.execute(load_sql("export/client_config.sql"), {"client_id": client_id}))
        self.client_space = (row["export_bucket"], row["export_prefix"]) if row else None
        self.stats: Counter[str] = Counter()
        self._client_folders: dict[str, ExportLocation | None] = {}
        #: rows removed per request in the folder being purged (its client manifest twin is listed for them)
        self._folder_requests: Counter[int] = Counter()

    def folder_of(self, hour: Any) -> str:
        """Return the backup folder of an export hour of the client.

        :param hour: a :class:`~events_pipeline.common.intervals.HourInterval`.
        """
        return backup_location(self.client_id, self.bucket, hour).folder

    def run(self, folders: Iterable[str] | None = None) -> dict[str, int]:
        """Purge the given folders (None: every folder of the client); return the counters.

        :param folders: backup folders (no trailing ``/``), e.g. from :meth:`folder_of`.
        :raises ErasureError: a backup object or manifest cannot be read (names it).
        """
        if folders is None:
            listing = self._all_folders()
        else:
            listing = []
            for folder in sorted(set(folders)):
                listing.append((folder, list_keys(self.s3, self.bucket, f"{folder}/")))
                self.stats["folders_listed"] += 1
        for folder, keys in listing:
            if keys:
                self.purge_folder(folder, keys)
        return dict(self.stats)

    def _all_folders(self) -> list[tuple[str, list[str]]]:
        """Return every backup folder of the client with its keys (one listing of its prefix)."""
        try:
            prefix = backup_prefix(self.client_id)
        except TenantIsolationError as exc:
            log.warning("erasure: client %r has no backup folder (%s); nothing to purge", self.client_id, exc)
            return []
        folders: dict[str, list[str]] = defaultdict(list)
        for key in list_keys(self.s3, self.bucket, prefix):
            folders[posixpath.dirname(key)].append(key)
        self.stats["folders_listed"] += len(folders)
        return sorted(folders.items())

    def purge_folder(self, folder: str, keys: list[str]) -> None:
        """Filter every data part of one folder; bring its manifest in line with the parts.

        :param folder: the folder (an hour of the client).
        :param keys: every key in it.
        """
        self._folder_requests = Counter()
        manifest_key = posixpath.join(folder, MANIFEST_NAME)
        manifest = self._read_manifest(manifest_key) if manifest_key in keys else None
        entries = file_entries(manifest, manifest_key) if manifest is not None else {}
        manifest_changed = False
        for key in sorted(k for k in keys if part_kind(k)):
            data, rewritten = self._purge_part(folder, key)
            entry = entries.get(key)
            if manifest is not None and entry is not None:
                manifest_changed |= self._refresh_entry(manifest, manifest_key, entry, key, data, rewritten)
        if manifest is not None and manifest_changed:
            self._write_manifest(folder, manifest_key, manifest)

    def _read_manifest(self, manifest_key: str) -> dict[str, Any]:
        """Read a backup manifest as it is (not validated: older writers' ``files[].key`` are absolute).

        :param manifest_key: its key.
        :raises UnreadableBackupError: not a JSON object (names the object).
        """
        body = self.s3.get_object(Bucket=self.bucket, Key=manifest_key)["Body"].read()
        try:
            return read_manifest(body, validate=False)
        except ManifestError as exc:
            raise UnreadableBackupError(
                f"erasure: client {self.client_id}: cannot read backup manifest "
                f"s3://{self.bucket}/{manifest_key}: {exc}"
            ) from exc

    def _purge_part(self, folder: str, key: str) -> tuple[bytes, bool]:
        """Remove the visitors' rows from one part: record it in the audit trail, then write it.

        :param folder: the part's folder.
        :param key: the part's key.
        :return: ``(the part's bytes now, whether it was rewritten)``.
        :raises UnreadableBackupError: the part is not readable in its format (names it).
        """
        got = self.s3.get_object(Bucket=self.bucket, Key=key)
        data = got["Body"].read()
        self.stats["objects_read"] += 1
        self.stats["bytes_read"] += len(data)
        try:
            if part_kind(key) == "parquet":
                filtered = filter_parquet(data, self.visitors)
            else:
                filtered = filter_jsonl(posixpath.basename(key), data, self.visitors)
        except Exception as exc:
            raise UnreadableBackupError(
                f"erasure: client {self.client_id}: cannot read backup object s3://{self.bucket}/{key}: {exc}"
            ) from exc
        if filtered is None:
            return data, False
        new_data, removed, rows_left = filtered
        recorded = self._record_removal(folder, key, removed)
        try:
            metadata = dict(got.get("Metadata") or {})
            if "sha256" in metadata:
                metadata["sha256"] = hashlib.sha256(new_data).hexdigest()
            put = self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=new_data,
                ContentType=got.get("ContentType") or "application/octet-stream",
                Metadata=metadata,
            )
            if put.get("VersionId"):  # a versioned bucket: the older versions hold the rows
                drop_older_versions(self.s3, self.bucket, key, keep_version=put["VersionId"])
        except Exception:
            self.audit.forget(recorded)
            raise
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

    def _record_removal(self, folder: str, key: str, removed: Counter[str]) -> list[int]:
        """Record the rewrite (and the client-bucket twin) for each concerned request; return the row ids.

        :param folder: the part's folder.
        :param key: the part's key.
        :param removed: rows removed per visitor.
        """
        per_request: dict[int, int] = {}
        for visitor, n in removed.items():
            for request_id in self.by_visitor.get(visitor, []):
                per_request[request_id] = per_request.get(request_id, 0) + n
        ids = self.audit.record(per_request, bucket=self.bucket, key=key, action="rewritten")
        self._folder_requests.update(per_request)
        twin = self._client_twin(folder, posixpath.basename(key))
        if twin is not None:
            self.audit.record(
                per_request,
                bucket=twin.bucket,
                key=twin.key(posixpath.basename(key)),
                action="listed_for_client",
                detail="the client's own copy of the same hour: the client's to act on, not changed",
            )
        return ids

    def _refresh_entry(
        self,
        manifest: dict[str, Any],
        manifest_key: str,
        entry: dict[str, Any],
        key: str,
        data: bytes,
        rewritten: bool,
    ) -> bool:
        """Make the manifest entry of a part describe its current bytes; return whether it changed.

        :param manifest: the folder's manifest.
        :param manifest_key: its key, for the message.
        :param entry: the part's ``files[]`` entry.
        :param key: the part's key.
        :param data: its bytes now.
        :param rewritten: whether this pass rewrote it (else a changed entry was stale).
        """
        if not update_file_entry(manifest, entry, describe_part(str(entry.get("key", "")), data)):
            return False
        if not rewritten:
            log.warning(
                "erasure: client %s: manifest s3://%s/%s was stale for %s (crash after a rewrite?): "
                "corrected",
                self.client_id,
                self.bucket,
                manifest_key,
                key,
            )
        return True

    def _write_manifest(self, folder: str, manifest_key: str, manifest: dict[str, Any]) -> None:
        """Write the folder's edited manifest back (serialised like the export writes it).

        :param folder: the folder.
        :param manifest_key: the manifest's key.
        :param manifest: the edited manifest.
        """
        put = self.s3.put_object(
            Bucket=self.bucket, Key=manifest_key, Body=manifest_bytes(manifest), ContentType=CONTENT_TYPE
        )
        if put.get("VersionId"):
            drop_older_versions(self.s3, self.bucket, manifest_key, keep_version=put["VersionId"])
        self.stats["manifests_updated"] += 1
        twin = self._client_twin(folder, MANIFEST_NAME)
        if twin is not None and self._folder_requests:
            self.audit.record(
                dict.fromkeys(self._folder_requests),
                bucket=twin.bucket,
                key=twin.manifest_key,
                action="listed_for_client",
                detail="the client's manifest of that hour: its row counts include the visitor's rows",
            )

    def _client_twin(self, folder: str, name: str) -> ExportLocation | None:
        """Return the client-bucket folder of the same hour as backup ``folder`` (None: not known).

        None when the client no longer exists, or the folder or the client's
        configuration does not fit the export's layout (logged once per folder).

        :param folder: a backup folder of the client.
        :param name: a file name in it (for the cache key only).
        """
        if folder not in self._client_folders:
            self._client_folders[folder] = self._client_folder(folder)
        return self._client_folders[folder]

    def client_uri(self, folder: str, name: str) -> str | None:
        """Return the ``s3://`` URI of file ``name`` of the backup ``folder``'s hour in the client's bucket.

        :param folder: a backup folder of the client.
        :param name: a file name in it.
        """
        location = self._client_twin(folder, name)
        return location.uri(name) if location else None

    def _client_folder(self, folder: str) -> ExportLocation | None:
        """Return the client-bucket folder of the same hour as backup ``folder`` (see :meth:`_client_twin`).

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
