"""The landing bucket and its registry: list, claim, read and move landing objects.

Key layout (contract §2 (docs/contract.md)), for ``incoming/<sub-path>/<name>``:

- loaded:      ``processed/<sub-path>/<name>``
- bad lines:   ``rejected/<sub-path>/<name>.rejected.ndjson``
- unreadable:  ``quarantine/<sub-path>/<name>`` + ``quarantine/<sub-path>/<name>.error.json``

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

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

INCOMING = "incoming/"
PROCESSED = "processed/"
REJECTED = "rejected/"
QUARANTINE = "quarantine/"


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
        object in ``incoming/`` is an identical re-upload to move out, not load.
    """

    file_id: int
    key: str
    etag: str
    size_bytes: int
    status: str
    attempts: int
    token: str
    reupload: bool = False

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        """Rebuild a claim from :meth:`as_dict` output.

        :param data: the dict.
        """
        return cls(**data)


def sub_path(key: str) -> str:
    """Return the part of ``key`` below ``incoming/``.

    :param key: an object key under ``incoming/``.
    :raises ValueError: the key is not under ``incoming/``.
    """
    if not key.startswith(INCOMING):
        raise ValueError(f"landing key {key!r} is not under {INCOMING}")
    return key[len(INCOMING) :]


def processed_key(key: str) -> str:
    """``incoming/a/b.ndjson`` -> ``processed/a/b.ndjson``.

    :param key: an object key under ``incoming/``.
    """
    return PROCESSED + sub_path(key)


def rejected_key(key: str) -> str:
    """``incoming/a/b.ndjson`` -> ``rejected/a/b.ndjson.rejected.ndjson``.

    :param key: an object key under ``incoming/``.
    """
    return REJECTED + sub_path(key) + ".rejected.ndjson"


def quarantine_key(key: str) -> str:
    """``incoming/a/b.ndjson`` -> ``quarantine/a/b.ndjson``.

    :param key: an object key under ``incoming/``.
    """
    return QUARANTINE + sub_path(key)


def error_key(key: str) -> str:
    """``incoming/a/b.ndjson`` -> ``quarantine/a/b.ndjson.error.json``.

    :param key: an object key under ``incoming/``.
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
    return [Claim(*row, token=token, reupload=True) for row in rows]


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


def move_object(client: Any, bucket: str, src: str, dest: str, etag: str | None) -> str:
    """Move ``src`` to ``dest`` in ``bucket`` by copy-then-delete (idempotent).

    The copy only happens while ``src`` still is version ``etag`` (a newer
    upload under the same key is never moved away unloaded). Re-running after a
    crash anywhere in between converges: a missing ``src`` with ``dest``
    present means the move already happened.

    :param client: a boto3 S3 client.
    :param bucket: the bucket.
    :param src: source key.
    :param dest: destination key.
    :param etag: the source version that may be moved (None: any).
    :return: ``moved``, ``already_moved`` or ``replaced`` (src now holds another
        version, which is left in place).
    """
    from botocore.exceptions import ClientError

    extra = {"CopySourceIfMatch": f'"{etag}"'} if etag else {}
    try:
        client.copy_object(Bucket=bucket, Key=dest, CopySource={"Bucket": bucket, "Key": src}, **extra)
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
    client.delete_object(Bucket=bucket, Key=src)
    return "moved"


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


def _exists(client: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in NO_SUCH_KEY:
            return False
        raise
    return True
