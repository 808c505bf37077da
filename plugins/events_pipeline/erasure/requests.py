"""GDPR erasure requests: delete a visitor's events and purge them from the backup exports.

For each client with pending rows in ``gdpr_erasure_requests`` (all its
visitors at once, so the client's data is read once per run):

1. the visitors' events are deleted from ``events_log`` (one statement; the
   counts are added to each request in the same transaction);
2. every Parquet object under ``s3://{backup}/{client_id}/`` is read (the
   ``visitor_id`` column first; the whole object only when a visitor is in it),
   the visitors' rows are filtered out and the object is rewritten under the
   same key with the same schema (zstd); the folder's ``_manifest.json`` gets the
   new ``rows``/``bytes``/``sha256`` of the file and the new ``row_count``.
   Nothing else in either changes;
3. the request records ``rows_deleted``, ``objects_rewritten`` (backup keys and
   rows removed), ``client_objects`` (the matching objects in the client's own
   bucket, which are the client's to act on and are not touched), status and times.

Safe to re-run: deletes and filters are idempotent, an object is recorded in
the request *before* it is rewritten, and a manifest whose entry no longer
matches its object (a crash between the two writes) is corrected on the next
run. Requests stay ``processing``/``pending`` until everything is done.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from events_pipeline.common.db import advisory_lock_key, connect, load_sql
from events_pipeline.common.errors import PipelineError
from events_pipeline.common.settings import VAR_BACKUP_BUCKET, get_setting
from events_pipeline.export.manifest import resolve_key

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
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


def _parquet_rows(data: bytes) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(io.BytesIO(data)).metadata.num_rows)


def _client_target(conn: psycopg.Connection, client_id: str) -> tuple[str, str] | None:
    row = conn.execute(
        "SELECT export_bucket, export_prefix FROM clients WHERE client_id = %s", (client_id,)
    ).fetchone()
    return (row[0], row[1].strip("/")) if row else None


def _save(conn: psycopg.Connection, req: Request) -> None:
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
    row = conn.execute(
        "SELECT objects_rewritten, client_objects FROM gdpr_erasure_requests WHERE request_id = %s",
        (req.request_id,),
    ).fetchone()
    if row:
        for o in row[0] or []:
            req.objects[o["key"]] = o
        for o in row[1] or []:
            req.client_objects[o["key"]] = o


def purge_backup(
    conn: psycopg.Connection, s3: Any, bucket: str, client_id: str, requests: list[Request]
) -> dict[str, int]:
    """Rewrite every backup object of ``client_id`` that holds a requested visitor.

    :param conn: an open autocommit connection (request audit lists are saved as it goes).
    :param s3: a boto3 S3 client.
    :param bucket: the backup bucket.
    :param client_id: the client whose folder ``{client_id}/`` is scanned.
    :param requests: the client's requests being processed.
    :return: counters: objects read, objects rewritten, manifests updated, rows removed.
    """
    by_visitor: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        by_visitor[r.visitor_id].append(r)
    visitors = set(by_visitor)
    target = _client_target(conn, client_id)
    stats: Counter[str] = Counter()
    keys = _list_keys(s3, bucket, f"{client_id}/")
    folders: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        folders[posixpath.dirname(key)].append(key)
    for folder, folder_keys in sorted(folders.items()):
        manifest_key = posixpath.join(folder, MANIFEST_NAME)
        manifest = None
        if manifest_key in folder_keys:
            # Plain JSON, not manifest.read_manifest: backup folders may hold manifests
            # whose file keys are absolute (older writers); resolve_key handles both.
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
        entries: dict[str, dict[str, Any]] = {}
        if manifest is not None:
            for entry in manifest.get("files", []):
                entries[resolve_key(manifest_key, str(entry.get("key", "")))] = entry
        manifest_changed = False
        for key in sorted(k for k in folder_keys if k.endswith(".parquet")):
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            stats["objects_read"] += 1
            try:
                filtered = filter_parquet(data, visitors)
            except Exception as exc:
                raise ErasureError(
                    f"erasure: client {client_id}: cannot read backup object s3://{bucket}/{key}: {exc}"
                ) from exc
            if filtered is not None:
                new_data, removed, rows_left = filtered
                rel = key[len(client_id) + 1 :]
                for visitor, n in removed.items():
                    for req in by_visitor.get(visitor, []):
                        prev = req.objects.get(key, {}).get("rows_removed", 0)
                        req.objects[key] = {"key": f"s3://{bucket}/{key}", "rows_removed": prev + n}
                        if target:
                            ck = (
                                f"s3://{target[0]}/{target[1]}/{rel}"
                                if target[1]
                                else f"s3://{target[0]}/{rel}"
                            )
                            req.client_objects[ck] = {"key": ck, "backup_key": f"s3://{bucket}/{key}"}
                        # Recorded before the object is rewritten: a crash leaves no unrecorded rewrite.
                        _save(conn, req)
                s3.put_object(Bucket=bucket, Key=key, Body=new_data)
                stats["objects_rewritten"] += 1
                stats["rows_removed"] += sum(removed.values())
                log.info(
                    "erasure: client %s: rewrote s3://%s/%s: %d row(s) removed, %d left, %d -> %d bytes",
                    client_id,
                    bucket,
                    key,
                    sum(removed.values()),
                    rows_left,
                    len(data),
                    len(new_data),
                )
                data = new_data
            entry = entries.get(key)
            if entry is not None:
                sha = hashlib.sha256(data).hexdigest()
                if entry.get("sha256") != sha or entry.get("bytes") != len(data):
                    if filtered is None:
                        log.warning(
                            "erasure: client %s: manifest s3://%s/%s was stale for %s "
                            "(crash after a rewrite?); corrected",
                            client_id,
                            bucket,
                            manifest_key,
                            key,
                        )
                    entry["rows"] = _parquet_rows(data)
                    entry["bytes"] = len(data)
                    entry["sha256"] = sha
                    manifest_changed = True
        if manifest is not None and manifest_changed:
            manifest["row_count"] = sum(int(e.get("rows") or 0) for e in manifest.get("files", []))
            # Same serialisation as the export's manifest writer (indent 2, UTF-8, final newline).
            body = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
            s3.put_object(Bucket=bucket, Key=manifest_key, Body=body, ContentType="application/json")
            stats["manifests_updated"] += 1
            if target:
                rel = manifest_key[len(client_id) + 1 :]
                ck = f"s3://{target[0]}/{target[1]}/{rel}" if target[1] else f"s3://{target[0]}/{rel}"
                for req in requests:
                    if any(posixpath.dirname(k) == folder for k in req.objects):
                        req.client_objects[ck] = {"key": ck, "backup_key": f"s3://{bucket}/{manifest_key}"}
                        _save(conn, req)
    return dict(stats)


def run_erasure(conn: psycopg.Connection, s3: Any, backup_bucket: str) -> dict[str, Any]:
    """Process every pending erasure request.

    :param conn: an open connection (switched to autocommit).
    :param s3: a boto3 S3 client for the backup bucket.
    :param backup_bucket: the backup bucket (Variable ``events_backup_bucket``).
    :return: per client: requests, rows deleted, objects rewritten, final status.
    :raises ErasureError: a client's requests failed (the others were processed).
    """
    conn.autocommit = True
    key = advisory_lock_key(LOCK_NAME)
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:  # type: ignore[index]
        log.warning("erasure: another run holds the erasure lock; nothing done this time")
        return {}
    try:
        claimed = conn.execute(load_sql("erasure/claim_requests.sql")).fetchall()
        by_client: dict[str, list[Request]] = defaultdict(list)
        for request_id, client_id, visitor_id in claimed:
            req = Request(int(request_id), client_id, visitor_id)
            _load_previous(conn, req)
            by_client[client_id].append(req)
        log.info("erasure: %d request(s) for %d client(s)", len(claimed), len(by_client))
        summary: dict[str, Any] = {}
        failures: list[str] = []
        for client_id, reqs in sorted(by_client.items()):
            try:
                summary[client_id] = _process_client(conn, s3, backup_bucket, client_id, reqs)
            except Exception as exc:  # noqa: BLE001 - recorded on the requests, re-raised below
                message = f"{type(exc).__name__}: {exc}"
                failures.append(f"client {client_id}: {message}")
                ids = [r.request_id for r in reqs]
                attempts = conn.execute(
                    "SELECT max(attempts) FROM gdpr_erasure_requests WHERE request_id = ANY(%s)", (ids,)
                ).fetchone()[0]  # type: ignore[index]
                status = "failed" if (attempts or 0) >= MAX_ATTEMPTS else "pending"
                conn.execute(
                    load_sql("erasure/finish_request.sql"),
                    {"status": status, "error": message[:2000], "request_ids": ids},
                )
                log.error("erasure: client %s: %s (requests %s now %s)", client_id, message, ids, status)
        if failures:
            raise ErasureError("erasure failed for " + "; ".join(failures))
        return summary
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _process_client(
    conn: psycopg.Connection, s3: Any, bucket: str, client_id: str, reqs: list[Request]
) -> dict[str, Any]:
    t0 = time.monotonic()
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
    deleted_at = datetime.now(UTC)
    log.info(
        "erasure: client %s: %d event row(s) deleted for %d visitor(s)",
        client_id,
        sum(deleted.values()),
        len(visitors),
    )
    scan_started = datetime.now(UTC)
    stats = purge_backup(conn, s3, bucket, client_id, reqs)
    racing = conn.execute(
        load_sql("erasure/running_exports.sql"),
        {"client_id": client_id, "deleted_at": deleted_at, "scan_started_at": scan_started},
    ).fetchone()[0]  # type: ignore[index]
    ids = [r.request_id for r in reqs]
    if racing:
        status, error = (
            "pending",
            (f"an export of client {client_id} ran during the backup scan; re-checked next run"),
        )
        log.warning("erasure: %s (requests %s stay pending)", error, ids)
    else:
        status, error = "done", None
    conn.execute(
        load_sql("erasure/finish_request.sql"), {"status": status, "error": error, "request_ids": ids}
    )
    seconds = time.monotonic() - t0
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
        seconds,
    )
    return {"requests": ids, "status": status, "rows_deleted": sum(deleted.values()), **stats}


def run() -> dict[str, Any]:
    """Task entry point: process pending requests with the backup bucket from Airflow Variables."""
    from events_pipeline.common.s3 import check_bucket, s3_client

    bucket = str(get_setting(VAR_BACKUP_BUCKET))
    client = s3_client()
    check_bucket(client, bucket, what=f"Variable {VAR_BACKUP_BUCKET}")
    with connect() as conn:
        return run_erasure(conn, client, bucket)
