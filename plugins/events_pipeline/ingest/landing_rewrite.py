"""Landing objects written again without some of their lines, in their own format.

Used by ingest, whose ``processed/`` copy of a file must not keep the lines it dropped
for erased visitors, and by erasure (``erasure.landing_objects``), which removes a
request's lines from the landing bucket's objects:

- NDJSON (``.ndjson``, ``.jsonl``): every other line keeps its bytes;
- gzip NDJSON (``.ndjson.gz``, ``.jsonl.gz``, several members read): the kept lines,
  compressed again as one member;
- Parquet: the kept rows written again with the file's schema and compression codec.

Lines are numbered as ingest numbers them (``file_readers.iter_byte_blocks``: split at
``\\n`` only, a leading UTF-8 BOM not part of the first line, no line after a final
``\\n``); Parquet rows in file order. On a versioned bucket, the older versions of an
object written here are deleted (:func:`drop_older_versions`): they hold the lines.
"""

from __future__ import annotations

import gzip
import io
import logging
import shutil
import tempfile
import zlib
from collections.abc import Callable, Collection
from typing import IO, Any

from events_pipeline.common import failpoints
from events_pipeline.common.s3 import NO_SUCH_KEY, PRECONDITION_FAILED, error_code
from events_pipeline.ingest import landing
from events_pipeline.ingest.file_readers import UTF8_BOM

log = logging.getLogger(__name__)

#: Name endings (lower-case) of the landing formats (contract §2.2).
NDJSON_ENDINGS = (".ndjson", ".jsonl")
GZIP_ENDINGS = (".ndjson.gz", ".jsonl.gz")
PARQUET_ENDINGS = (".parquet",)
#: Bytes read from S3 or a spool file at a time.
_CHUNK = 1 << 20


class UnreadableObjectError(ValueError):
    """An object cannot be read line by line in the format its name says."""


def gunzip(data: bytes) -> bytes:
    """Decompress gzip bytes (several members accepted).

    :param data: the object's bytes.
    :raises UnreadableObjectError: not gzip, corrupt or cut short.
    """
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise UnreadableObjectError(f"not readable as gzip: {exc}") from exc


def parquet_keep_rows(data: bytes | IO[bytes], keep: Callable[[Any], Any]) -> tuple[bytes | None, int, int]:
    """Write a Parquet file again with the rows ``keep`` selects, its schema and codec kept.

    :param data: the file's bytes, or a seekable binary file holding them.
    :param keep: given the whole ``pyarrow.Table``, returns a boolean mask (list or
        array) of the rows to keep.
    :return: ``(new bytes or None when every row is kept, rows removed, rows left)``.
    :raises UnreadableObjectError: not a readable Parquet file.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        parquet = pq.ParquetFile(source)
        table = parquet.read()
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableObjectError(f"not readable as Parquet: {exc}") from exc
    mask = pa.array(keep(table), type=pa.bool_())
    left = int(pc.sum(mask).as_py() or 0)
    if left == table.num_rows:
        return None, 0, left
    meta = parquet.metadata
    codec = "zstd"
    if meta.num_row_groups and meta.num_columns:
        codec = meta.row_group(0).column(0).compression.lower()
    out = io.BytesIO()
    pq.write_table(table.filter(mask), out, compression="none" if codec == "uncompressed" else codec)
    return out.getvalue(), table.num_rows - left, left


def ndjson_without_lines(src: IO[bytes], out: IO[bytes], lines: Collection[int]) -> int:
    """Copy NDJSON from ``src`` to ``out`` without the lines numbered ``lines`` (1-based).

    Numbered as ingest numbers them (module docstring); every other byte is copied as
    it is, a leading BOM included.

    :param src: the uncompressed text, a binary stream.
    :param out: where the kept bytes go.
    :return: lines left out.
    """
    removed = 0
    first = src.read(len(UTF8_BOM))
    if first == UTF8_BOM:
        out.write(first)
        first = b""
    n = 0
    pending = first
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        pending += chunk
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if end == -1:
                break
            n += 1
            if n in lines:
                removed += 1
            else:
                out.write(pending[start : end + 1])
            start = end + 1
        pending = pending[start:]
    if pending:  # a last line without its "\n"
        n += 1
        if n in lines:
            removed += 1
        else:
            out.write(pending)
    return removed


def file_without_lines(name: str, src: IO[bytes], out: IO[bytes], lines: Collection[int]) -> int:
    """Write the landing file ``src`` to ``out`` without ``lines``; return lines left out.

    :param name: the object's key or name: its ending (contract §2.2) decides the format.
    :param src: the object's bytes, a seekable binary file.
    :param out: receives the new object.
    :param lines: the 1-based line (Parquet: row) numbers to leave out.
    :raises UnreadableObjectError: the object cannot be read in its format.
    """
    name = name.lower()
    if name.endswith(PARQUET_ENDINGS):
        import numpy as np

        def keep(table: Any) -> Any:
            mask = np.ones(table.num_rows, bool)
            for line in lines:
                if 1 <= line <= table.num_rows:
                    mask[line - 1] = False
            return mask

        new, removed, _ = parquet_keep_rows(src, keep)
        out.write(new if new is not None else src.read())
        return removed
    if name.endswith(GZIP_ENDINGS):
        try:
            with (
                gzip.GzipFile(fileobj=src, mode="rb") as text,
                gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as packed,
            ):
                return ndjson_without_lines(text, packed, lines)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableObjectError(f"not readable as gzip: {exc}") from exc
    return ndjson_without_lines(src, out, lines)


def move_without_lines(
    client: Any, bucket: str, src: str, dest: str, etag: str | None, lines: Collection[int]
) -> str:
    """Move version ``etag`` of ``src`` to ``dest`` written again without ``lines`` (idempotent).

    The move of :func:`~events_pipeline.ingest.landing.move_object` for a file some of
    whose lines must not be kept: ``dest`` is written (never copied), then that version
    of ``src`` is deleted - on a versioned bucket, every version of ``src`` with that
    ETag and every older version of ``dest`` too. Re-running after a crash anywhere in
    between converges: ``src`` still there is written again, ``src`` gone with ``dest``
    present means the move happened.

    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param src: the landing key (``incoming/`` or ``replay/``).
    :param dest: the ``processed/`` key.
    :param etag: the version that was loaded (None: whatever is there).
    :param lines: the 1-based line (row) numbers to leave out.
    :return: ``rewritten``, ``already_moved``, ``already_moved_missing_dest``, ``replaced``
        (``src`` holds another version: nothing written) or ``copied_newer_left``
        (written, but ``src`` was overwritten before the delete: the newer version stays).
    """
    from botocore.exceptions import ClientError

    with tempfile.TemporaryFile() as spool, tempfile.TemporaryFile() as rewritten:
        try:
            got = client.get_object(Bucket=bucket, Key=src, **({"IfMatch": f'"{etag}"'} if etag else {}))
        except ClientError as exc:
            code = error_code(exc)
            if code in NO_SUCH_KEY:
                return (
                    "already_moved"
                    if landing.object_exists(client, bucket, dest)
                    else "already_moved_missing_dest"
                )
            if code in PRECONDITION_FAILED:
                return "replaced"
            raise
        body = got["Body"]
        try:
            shutil.copyfileobj(body, spool, _CHUNK)
        finally:
            body.close()
        spool.seek(0)
        removed = file_without_lines(src, spool, rewritten, set(lines))
        size = rewritten.tell()
        rewritten.seek(0)
        client.upload_fileobj(
            rewritten,
            bucket,
            dest,
            ExtraArgs={"ContentType": got.get("ContentType") or "application/octet-stream"},
        )
    version = _latest_version(client, bucket, dest)
    if version is not None:
        drop_older_versions(client, bucket, dest, keep_version=version)
    log.info(
        "wrote s3://%s/%s from %s without %d line(s) of erased visitors (%d bytes)",
        bucket,
        dest,
        src,
        removed,
        size,
    )
    failpoints.checkpoint("during_move", src)
    condition = {"IfMatch": f'"{etag}"'} if etag else {}
    try:
        deleted = client.delete_object(Bucket=bucket, Key=src, **condition)
    except ClientError as exc:
        code = error_code(exc)
        if code in PRECONDITION_FAILED:
            return "copied_newer_left"
        if code not in NO_SUCH_KEY:
            raise
        deleted = {}
    if deleted.get("DeleteMarker") or deleted.get("VersionId") or version is not None:
        _drop_versions_with_etag(client, bucket, src, etag)
    return "rewritten"


def delete_version(client: Any, bucket: str, key: str, etag: str | None) -> str:
    """Delete version ``etag`` of ``key`` without copying it anywhere (an identical re-upload).

    The delete is conditional on the ETag, so a newer upload under the same key stays;
    on a versioned bucket every version of ``key`` with that ETag is deleted too (a
    delete marker alone would leave the bytes in an older version).

    :param client: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param key: the landing key.
    :param etag: the version to delete (None: whatever is there).
    :return: ``deleted``, ``already_gone`` (no object under ``key``) or ``replaced``
        (``key`` holds another version: nothing deleted).
    """
    from botocore.exceptions import ClientError

    condition = {"IfMatch": f'"{etag}"'} if etag else {}
    try:
        deleted = client.delete_object(Bucket=bucket, Key=key, **condition)
    except ClientError as exc:
        code = error_code(exc)
        if code in PRECONDITION_FAILED:
            return "replaced"
        if code not in NO_SUCH_KEY:
            raise
        return "already_gone"
    if deleted.get("DeleteMarker") or deleted.get("VersionId"):
        _drop_versions_with_etag(client, bucket, key, etag)
    return "deleted"


def _latest_version(client: Any, bucket: str, key: str) -> str | None:
    """The version id of ``key``'s current version (None: the bucket is not versioned)."""
    version = client.head_object(Bucket=bucket, Key=key).get("VersionId")
    return None if version in (None, "null") else str(version)


def _drop_versions_with_etag(client: Any, bucket: str, key: str, etag: str | None) -> int:
    """Delete the versions of ``key`` that are version ``etag`` (a newer upload is left alone).

    :return: versions deleted.
    """
    response = client.list_object_versions(Bucket=bucket, Prefix=key)
    dropped = 0
    for entry in response.get("Versions", []):
        if entry.get("Key") != key or entry.get("VersionId") in (None, "null"):
            continue
        if etag is None or str(entry.get("ETag", "")).strip('"') == etag:
            client.delete_object(Bucket=bucket, Key=key, VersionId=entry["VersionId"])
            dropped += 1
    return dropped


def drop_older_versions(s3: Any, bucket: str, key: str, *, keep_version: str | None) -> int:
    """Delete every version (and delete marker) of ``key`` but ``keep_version``.

    Called after a write to a versioned bucket (its put or delete answered with a
    version id): the older versions still hold what was erased. Versions ``null``
    (written while the bucket was unversioned) are deleted too.

    :param s3: a boto3 S3 client.
    :param bucket: the bucket.
    :param key: the object's key.
    :param keep_version: the version just written (None: keep none).
    :return: versions deleted.
    """
    response = s3.list_object_versions(Bucket=bucket, Prefix=key)
    dropped = 0
    for entry in (*response.get("Versions", []), *response.get("DeleteMarkers", [])):
        version = entry.get("VersionId")
        if entry.get("Key") != key or version is None or version == keep_version:
            continue
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
        dropped += 1
    return dropped
