"""The landing bucket and its registry: list, claim, read and move landing objects.

Key layout (contract §2.1 (docs/contract.md)), for ``incoming/<sub-path>/<name>``
registered as ``file_id`` N, where ``<name>`` is ``<stem><suffix>`` and ``<suffix>``
the format ending (``.ndjson.gz``...):

- loaded:      ``processed/<sub-path>/<stem>.fN<suffix>``
- bad lines:   ``rejected/<sub-path>/<stem>.fN<suffix>.rejected.ndjson``
- unreadable:  ``quarantine/<sub-path>/<name>`` + ``quarantine/<sub-path>/<name>.error.json``

Each version of a key (each registry row) gets its own ``processed/`` and
``rejected/`` objects. Replays (``ingest.replay``) are landing objects under
``replay/``; theirs go to ``processed/replay/...`` and so on.

The registry table ``landing_files`` (one row per bucket/key/ETag) is the
source of truth; see docs/decisions/ingest-exactly-once.md for the claim design.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from events_pipeline.common import failpoints
from events_pipeline.common.db import load_sql
from events_pipeline.common.s3 import NO_SUCH_KEY, PRECONDITION_FAILED, error_code
from events_pipeline.ingest.file_readers import LANDING_SUFFIXES

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

INCOMING = "incoming/"
PROCESSED = "processed/"
REJECTED = "rejected/"
QUARANTINE = "quarantine/"
#: Where ``events_replay`` puts the files it feeds back (never listed by ``events_ingest``).
REPLAY = "replay/"
#: Objects of at least this size are moved with S3's multipart copy (UploadPartCopy): a
#: single CopyObject is limited to 5 GiB. Parts of MULTIPART_COPY_PART_BYTES (S3: 5 MiB to
#: 5 GiB each, at most 10,000 parts; larger parts are chosen for huge objects).
MULTIPART_COPY_THRESHOLD = 1 << 30
MULTIPART_COPY_PART_BYTES = 256 << 20
#: Parallel part copies of one multipart move.
MULTIPART_COPY_THREADS = 4


@dataclass(frozen=True)
class LandingObject:
    """One object listed under ``incoming/``.

    :param key: the object key.
    :param etag: its ETag without quotes (identifies the version).
    :param size_bytes: its size.
    :param last_modified: when it was written.
    """

    key: str
    etag: str
    size_bytes: int
    last_modified: datetime


@dataclass(frozen=True)
class Claim:
    """A registry row this run now holds a lease on.

    :param file_id: registry id (``events_log.file_id``).
    :param key: object key under ``incoming/``.
    :param etag: the object version registered.
    :param size_bytes: size when listed.
    :param status: registry status at claim time: ``claimed`` (load it),
        ``loaded``/``processed`` (only move it to ``processed/``) or
        ``quarantined`` (only move it to ``quarantine/``).
    :param attempts: how many times the file has been claimed.
    :param token: the claim token (``claimed_by``) proving the lease.
    :param reupload: the version was already processed or quarantined; the
        object in ``incoming/`` is an identical re-upload to delete, not load or copy.
    :param dest_key: where the first upload of a re-upload went (``landing_files.processed_key``).
    """

    file_id: int
    key: str
    etag: str
    size_bytes: int
    status: str
    attempts: int
    token: str
    reupload: bool = False
    dest_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the claim as a JSON-serialisable dict (XCom)."""
        return {
            "file_id": self.file_id,
            "key": self.key,
            "etag": self.etag,
            "size_bytes": self.size_bytes,
            "status": self.status,
            "attempts": self.attempts,
            "token": self.token,
            "reupload": self.reupload,
            "dest_key": self.dest_key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        """Rebuild a claim from :meth:`as_dict` output.

        :param data: the dict.
        """
        return cls(**data)


def sub_path(key: str) -> str:
    """Return the part of ``key`` below ``incoming/`` (a replay's key keeps its ``replay/``).

    :param key: an object key under ``incoming/`` or ``replay/``.
    :raises ValueError: the key is under neither.
    """
    if key.startswith(INCOMING):
        return key[len(INCOMING) :]
    if key.startswith(REPLAY):
        return key
    raise ValueError(f"landing key {key!r} is not under {INCOMING} (nor {REPLAY})")


def versioned(path: str, file_id: int) -> str:
    """``a/b.ndjson.gz``, 17 -> ``a/b.f17.ndjson.gz``: the name of one version of a landing object.

    The registry id goes before the format ending (``.ndjson.gz``, ``.parquet``...) so the
    name keeps it; a name without one gets ``.f17`` at its end.

    :param path: a sub-path (``<folders>/<name>``).
    :param file_id: the version's registry id.
    """
    head, slash, name = path.rpartition("/")
    lower = name.lower()
    for suffix in LANDING_SUFFIXES:
        if lower.endswith(suffix):
            cut = len(name) - len(suffix)
            return f"{head}{slash}{name[:cut]}.f{file_id}{name[cut:]}"
    return f"{path}.f{file_id}"


def processed_key(key: str, file_id: int) -> str:
    """``incoming/a/b.ndjson``, 17 -> ``processed/a/b.f17.ndjson``.

    :param key: an object key under ``incoming/`` (or ``replay/``).
    :param file_id: the version's registry id (each version keeps its own object).
    """
    return PROCESSED + versioned(sub_path(key), file_id)


def rejected_key(key: str, file_id: int) -> str:
    """``incoming/a/b.ndjson``, 17 -> ``rejected/a/b.f17.ndjson.rejected.ndjson``.

    :param key: an object key under ``incoming/`` (or ``replay/``).
    :param file_id: the version's registry id (each version keeps its own object).
    """
    return REJECTED + versioned(sub_path(key), file_id) + ".rejected.ndjson"


def quarantine_key(key: str) -> str:
    """``incoming/a/b.ndjson`` -> ``quarantine/a/b.ndjson``.

    :param key: an object key under ``incoming/`` (or ``replay/``).
    """
    return QUARANTINE + sub_path(key)


def error_key(key: str) -> str:
    """``incoming/a/b.ndjson`` -> ``quarantine/a/b.ndjson.error.json``.

    :param key: an object key under ``incoming/`` (or ``replay/``).
    """
    return quarantine_key(key) + ".error.json"


def iter_incoming(client: Any, bucket: str, *, page_size: int = 1000) -> Iterator[list[LandingObject]]:
    """Yield pages of objects under ``incoming/`` (folder markers skipped).

    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param page_size: keys per listing page.
    """
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=INCOMING, PaginationConfig={"PageSize": page_size}):
        objects = [
            LandingObject(o["Key"], o["ETag"].strip('"'), int(o["Size"]), o["LastModified"])
            for o in page.get("Contents", [])
            if not o["Key"].endswith("/")
        ]
        if objects:
            yield objects


def claim_stale(
    conn: psycopg.Connection, bucket: str, token: str, *, limit: int, lease_minutes: int
) -> list[Claim]:
    """Take over expired claims (crashed loads, unfinished moves); commits.

    :param conn: a connection (not in a transaction block).
    :param bucket: the landing bucket.
    :param token: this run's claim token.
    :param limit: most rows to take.
    :param lease_minutes: length of the new lease.
    """
    if limit <= 0:
        return []
    with conn.transaction():
        rows = conn.execute(
            load_sql("ingest/claim_stale.sql"),
            {"bucket": bucket, "token": token, "limit": limit, "lease_minutes": lease_minutes},
        ).fetchall()
    return [Claim(*row, token=token) for row in rows]


def claim_new(
    conn: psycopg.Connection,
    bucket: str,
    objects: list[LandingObject],
    token: str,
    *,
    lease_minutes: int,
) -> list[Claim]:
    """Register and claim the listed objects nobody registered yet; commits.

    :param conn: a connection (not in a transaction block).
    :param bucket: the landing bucket.
    :param objects: listed objects (at most as many as this run may still take).
    :param token: this run's claim token.
    :param lease_minutes: lease length.
    """
    if not objects:
        return []
    with conn.transaction():
        rows = conn.execute(
            load_sql("ingest/claim_new.sql"),
            {
                "bucket": bucket,
                "token": token,
                "lease_minutes": lease_minutes,
                "keys": [o.key for o in objects],
                "etags": [o.etag for o in objects],
                "sizes": [o.size_bytes for o in objects],
                "mtimes": [o.last_modified for o in objects],
            },
        ).fetchall()
    return [Claim(*row, token=token) for row in rows]


def already_done(
    conn: psycopg.Connection, bucket: str, objects: list[LandingObject], token: str
) -> list[Claim]:
    """Return listed objects whose version was already handled (identical re-uploads).

    :param conn: a connection.
    :param bucket: the landing bucket.
    :param objects: listed objects.
    :param token: this run's token (the returned claims only move objects).
    """
    if not objects:
        return []
    with conn.transaction():
        rows = conn.execute(
            load_sql("ingest/already_done.sql"),
            {"bucket": bucket, "keys": [o.key for o in objects], "etags": [o.etag for o in objects]},
        ).fetchall()
    return [Claim(*row[:6], token=token, reupload=True, dest_key=row[6]) for row in rows]


def open_object(client: Any, bucket: str, key: str, etag: str) -> IO[bytes] | None:
    """Open the registered version of a landing object for streaming.

    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param key: the object key.
    :param etag: the registered ETag (``IfMatch``: a replaced object is not read).
    :return: the body stream, or None when that version no longer exists.
    """
    from botocore.exceptions import ClientError

    try:
        return client.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')["Body"]
    except ClientError as exc:
        if error_code(exc) in NO_SUCH_KEY | PRECONDITION_FAILED:
            return None
        raise


def download_object(client: Any, bucket: str, key: str, etag: str, fileobj: IO[bytes]) -> bool:
    """Spool the registered version of an object into ``fileobj`` (Parquet needs seeking).

    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param key: the object key.
    :param etag: the registered ETag.
    :param fileobj: a writable binary file.
    :return: False when that version no longer exists.
    """
    body = open_object(client, bucket, key, etag)
    if body is None:
        return False
    try:
        while chunk := body.read(1 << 20):
            fileobj.write(chunk)
    finally:
        body.close()
    fileobj.flush()
    return True


def move_object(
    client: Any, bucket: str, src: str, dest: str, etag: str | None, size_bytes: int | None = None
) -> str:
    """Move ``src`` to ``dest`` in ``bucket`` by copy-then-delete (idempotent).

    Both steps are conditional on the version ``etag``: the copy happens only while
    ``src`` still is that version, and the delete only removes that version, so a
    newer upload under the same key is never moved away unloaded nor deleted. An
    object of :data:`MULTIPART_COPY_THRESHOLD` bytes or more is copied part by part
    (S3's ``CopyObject`` stops at 5 GiB). Re-running after a crash anywhere in
    between converges: a missing ``src`` with ``dest`` present means the move
    already happened.

    :param client: a boto3 S3 client.
    :param bucket: the bucket.
    :param src: source key.
    :param dest: destination key.
    :param etag: the source version that may be moved (None: any).
    :param size_bytes: the source's size, when known (chooses the copy; None: asked).
    :return: ``moved``; ``already_moved``; ``already_moved_missing_dest`` (neither
        is there); ``replaced`` (src holds another version, nothing copied); or
        ``copied_newer_left`` (this version was copied, but src was overwritten
        before the delete: the newer version stays in place).
    """
    from botocore.exceptions import ClientError

    try:
        if not _copy_version(client, bucket, src, dest, etag, size_bytes):
            return "replaced"
    except ClientError as exc:
        code = error_code(exc)
        if code in NO_SUCH_KEY:
            if _exists(client, bucket, dest):
                return "already_moved"
            return "already_moved_missing_dest"
        if code in PRECONDITION_FAILED:
            return "replaced"
        raise
    failpoints.checkpoint("during_move", src)
    condition = {"IfMatch": f'"{etag}"'} if etag else {}
    try:
        client.delete_object(Bucket=bucket, Key=src, **condition)
    except ClientError as exc:
        code = error_code(exc)
        if code in PRECONDITION_FAILED:
            return "copied_newer_left"
        if code not in NO_SUCH_KEY:
            raise
    return "moved"


def copy_object(
    client: Any, bucket: str, src: str, dest: str, etag: str | None, size_bytes: int | None = None
) -> bool:
    """Copy version ``etag`` of ``src`` to ``dest`` (multipart from :data:`MULTIPART_COPY_THRESHOLD` bytes).

    :param client: a boto3 S3 client.
    :param bucket: the bucket.
    :param src: source key.
    :param dest: destination key.
    :param etag: the version to copy (None: whatever is there).
    :param size_bytes: the source's size, when known.
    :return: False when ``src`` holds another version (nothing is left at ``dest``).
    :raises botocore.exceptions.ClientError: ``NoSuchKey`` / ``404`` when ``src`` is gone.
    """
    from botocore.exceptions import ClientError

    try:
        return _copy_version(client, bucket, src, dest, etag, size_bytes)
    except ClientError as exc:
        if error_code(exc) in PRECONDITION_FAILED:
            return False
        raise


def _copy_version(
    client: Any, bucket: str, src: str, dest: str, etag: str | None, size_bytes: int | None
) -> bool:
    """The copy of :func:`move_object`; False when the server copied another version (undone).

    A server that ignores ``x-amz-copy-source-if-match`` (some S3 emulations) is caught
    where it can be: a single-part object's copy keeps its ETag, so another ETag
    means another version was copied, and that copy is deleted again.
    """
    condition = {"CopySourceIfMatch": f'"{etag}"'} if etag else {}
    source = {"Bucket": bucket, "Key": src}
    if size_bytes is None:
        head = client.head_object(Bucket=bucket, Key=src, **({"IfMatch": f'"{etag}"'} if etag else {}))
        size_bytes = int(head["ContentLength"])
    if size_bytes >= MULTIPART_COPY_THRESHOLD:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MULTIPART_COPY_THRESHOLD,
            multipart_chunksize=MULTIPART_COPY_PART_BYTES,
            max_concurrency=MULTIPART_COPY_THREADS,
        )
        # boto3's managed copy: HEAD (IfMatch), then UploadPartCopy of each part with
        # x-amz-copy-source-if-match, then CompleteMultipartUpload
        client.copy(source, bucket, dest, ExtraArgs=condition, Config=config)
        return True
    copied = client.copy_object(Bucket=bucket, Key=dest, CopySource=source, **condition)
    new_etag = str(copied.get("CopyObjectResult", {}).get("ETag", "")).strip('"')
    if etag and "-" not in etag and new_etag and new_etag != etag:
        client.delete_object(Bucket=bucket, Key=dest)
        return False
    return True


def put_bytes(client: Any, bucket: str, key: str, body: bytes | IO[bytes], content_type: str) -> None:
    """Write an object (rejected lines, error reports); overwriting is harmless.

    :param client: a boto3 S3 client.
    :param bucket: the bucket.
    :param key: the key.
    :param body: bytes or a readable binary file positioned at its start.
    :param content_type: the MIME type.
    """
    if isinstance(body, bytes | bytearray):
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    else:
        client.upload_fileobj(body, bucket, key, ExtraArgs={"ContentType": content_type})


def object_exists(client: Any, bucket: str, key: str) -> bool:
    """Whether ``key`` exists in ``bucket`` (any other S3 error is raised).

    :param client: a boto3 S3 client.
    :param bucket: the bucket.
    :param key: the key.
    """
    return _exists(client, bucket, key)


def _exists(client: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in NO_SUCH_KEY:
            return False
        raise
    return True
