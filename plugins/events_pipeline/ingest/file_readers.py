"""Streaming readers of landing files: NDJSON, gzip NDJSON and Parquet.

Memory stays bounded whatever the file size: NDJSON is read in fixed-size
chunks (decompressed on the fly for gzip) and handed out as blocks of decoded
lines; Parquet is read one row group batch at a time from a local spool file.
A file that cannot be read raises :class:`UnreadableFileError`, which sends it to
``quarantine/``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import IO, Any

from events_pipeline.common.errors import PipelineError

#: Bytes of the (decompressed) stream per chunk, i.e. per block of lines: a file's first
#: chunk is FIRST_CHUNK_BYTES (PostgreSQL gets rows soon), each next one twice the last,
#: up to CHUNK_BYTES. The vectorised path costs ~3.5 ms per block whatever its size, so
#: big blocks are cheaper per event (2 MB ones: -9 % CPU against 1 MB); see
#: ``bench_ingest.py --compare-blocks``.
CHUNK_BYTES = 2 << 20
FIRST_CHUNK_BYTES = 512 << 10
#: A longer line makes the file unreadable (``line_too_long``).
MAX_LINE_BYTES = 64 << 20
#: Compressed bytes read from a gzip stream at a time.
GZIP_READ_BYTES = 256 << 10
#: Rows per Parquet batch.
PARQUET_BATCH_ROWS = 10_000
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"

NDJSON = "ndjson"
NDJSON_GZIP = "ndjson.gz"
PARQUET = "parquet"
_SUFFIXES = (
    (".ndjson.gz", NDJSON_GZIP),
    (".jsonl.gz", NDJSON_GZIP),
    (".ndjson", NDJSON),
    (".jsonl", NDJSON),
    (".parquet", PARQUET),
)


class UnreadableFileError(PipelineError):
    """A landing file cannot be read at all; it is quarantined.

    :param kind: a short machine-readable kind (``corrupt_gzip``, ``invalid_utf8``,
        ``unsupported_format``, ``corrupt_parquet``).
    :param detail: what is wrong, for a person.
    :param line: the 1-based line where it was found, when known.
    """

    def __init__(self, kind: str, detail: str, line: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}" + (f" (line {line})" if line else ""))
        self.kind = kind
        self.detail = detail
        self.line = line


def file_format(key: str) -> str:
    """Return the format of a landing object from its name.

    :param key: the object key.
    :raises UnreadableFileError: the extension is not one contract §2 (docs/contract.md) lists.
    """
    lower = key.lower()
    for suffix, fmt in _SUFFIXES:
        if lower.endswith(suffix):
            return fmt
    raise UnreadableFileError(
        "unsupported_format",
        "file name must end with .ndjson, .jsonl, .ndjson.gz, .jsonl.gz or .parquet",
    )


def _chunk_sizes() -> Iterator[int]:
    """FIRST_CHUNK_BYTES, then twice the last size, up to CHUNK_BYTES (for ever)."""
    size = min(FIRST_CHUNK_BYTES, CHUNK_BYTES)
    while True:
        yield size
        size = min(2 * size, CHUNK_BYTES)


def _raw_chunks(stream: IO[bytes], gzipped: bool) -> Iterator[bytes]:
    if not gzipped:
        sizes = _chunk_sizes()
        while chunk := stream.read(next(sizes)):
            yield chunk
        return
    try:
        yield from _gunzip_chunks(stream)
    except zlib.error as exc:
        raise UnreadableFileError("corrupt_gzip", f"gzip stream is corrupt or truncated: {exc}") from None


def _gunzip_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """Decompress a gzip stream into chunks of the sizes of :func:`_chunk_sizes` (the last one shorter).

    ``gzip.GzipFile`` reads its source 8 kB at a time, each read a stack of
    Python calls through botocore and urllib3; this reads ``GZIP_READ_BYTES``
    at a time. zlib checks each member's header, CRC-32 and length (``wbits=31``);
    several members follow each other, with NUL padding between them allowed
    (as ``GzipFile`` allows it). Output is bounded per call, so a small
    compressed read that expands enormously still comes out in chunks.

    :raises zlib.error: not gzip, corrupt, or a member cut short.
    """
    decompressor = zlib.decompressobj(wbits=31)
    in_member = False
    source_done = False
    pending = b""  # compressed input not yet given to the decompressor
    pieces: list[bytes] = []
    have = 0
    sizes = _chunk_sizes()
    target = next(sizes)
    while True:
        if not pending and not source_done:
            pending = stream.read(GZIP_READ_BYTES)
            source_done = not pending
        if not in_member:
            pending = pending.lstrip(b"\x00")  # padding between (or after) members
            if not pending:
                if source_done:
                    break
                continue
            in_member = True
        # with no input left, this still gives what zlib holds back (the rest of a long match)
        piece = decompressor.decompress(pending, target - have)
        if decompressor.eof:  # end of a member: what follows is padding or the next member
            pending = decompressor.unused_data
            decompressor = zlib.decompressobj(wbits=31)
            in_member = False
        else:
            pending = decompressor.unconsumed_tail
            if source_done and not pending and not piece:
                raise zlib.error("the last gzip member is cut short (the file was truncated)")
        if piece:
            pieces.append(piece)
            have += len(piece)
            if have >= target:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces, have = [], 0
                target = next(sizes)
    if pieces:
        yield b"".join(pieces)


def iter_line_blocks(stream: IO[bytes], *, gzipped: bool) -> Iterator[list[str]]:
    """Yield the file's lines, decoded from UTF-8, in blocks (one block per chunk).

    Line endings (``\\n``) are removed; a ``\\r`` before them is kept (JSON
    treats it as whitespace). A UTF-8 byte-order mark at the start is dropped.

    :param stream: a binary file object (an S3 ``StreamingBody``, a local file).
    :param gzipped: the stream is gzip-compressed (several members allowed).
    :raises UnreadableFileError: corrupt gzip, or bytes that are not UTF-8 (names the line).
    """
    for block in iter_byte_blocks(stream, gzipped=gzipped):
        yield block.decode("utf-8").split("\n")


def iter_byte_blocks(stream: IO[bytes], *, gzipped: bool) -> Iterator[bytes]:
    """Yield the file's lines in blocks of UTF-8 bytes (lines joined by ``\\n``, none after the last).

    The same blocks as :func:`iter_line_blocks`, still encoded: every block is
    checked to be valid UTF-8 before it is handed out (so a decode of it, or of
    any of its lines, cannot fail), and ``block.split(b"\\n")`` gives the lines.

    :param stream: a binary file object (an S3 ``StreamingBody``, a local file).
    :param gzipped: the stream is gzip-compressed (several members allowed).
    :raises UnreadableFileError: corrupt gzip, or bytes that are not UTF-8 (names the line).
    """
    carry = b""
    lines_before = 0
    first = True
    for chunk in _raw_chunks(stream, gzipped):
        if first:
            first = False
            if chunk.startswith(UTF8_BOM):
                chunk = chunk[len(UTF8_BOM) :]
            elif not gzipped and chunk.startswith(GZIP_MAGIC):
                raise UnreadableFileError(
                    "invalid_utf8", "file starts with gzip magic bytes but its name has no .gz suffix", 1
                )
        data = carry + chunk if carry else chunk
        cut = data.rfind(b"\n")
        if cut == -1:
            carry = data
            if len(carry) > MAX_LINE_BYTES:
                raise UnreadableFileError("line_too_long", f"a line is longer than {MAX_LINE_BYTES} bytes")
            continue
        carry = data[cut + 1 :]
        block = data[:cut]
        if not block.isascii():  # ASCII is UTF-8 (isascii is a word-at-a-time scan, no copy)
            _decode(block, lines_before)
        lines_before += block.count(b"\n") + 1
        yield block
    if carry:
        if not carry.isascii():
            _decode(carry, lines_before)
        yield carry


def _decode(data: bytes, lines_before: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = lines_before + data.count(b"\n", 0, exc.start) + 1
        raise UnreadableFileError(
            "invalid_utf8",
            f"bytes {data[exc.start : exc.start + 4]!r} are not UTF-8 (the file must be UTF-8 throughout)",
            line,
        ) from None


def iter_parquet_batches(path: str | IO[bytes]) -> Iterator[list[dict[str, Any]]]:
    """Yield the rows of a local Parquet file as blocks of dicts.

    :param path: a local file path or seekable binary file (the landing object spooled to disk).
    :raises UnreadableFileError: the file is not valid Parquet.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        batches = pf.iter_batches(batch_size=PARQUET_BATCH_ROWS)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            yield batch.to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError("corrupt_parquet", f"not a readable Parquet file: {exc}") from None
