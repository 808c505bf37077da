"""Streaming readers of landing files: NDJSON, gzip NDJSON and Parquet.

Memory stays bounded whatever the file size: NDJSON is read in fixed-size
chunks (decompressed on the fly for gzip) and handed out as blocks of decoded
lines; a line longer than :data:`MAX_LINE_BYTES` is not held: it is handed out
as its first :data:`LONG_LINE_RAW_BYTES` bytes and reported, so that line alone
is rejected (contract §2.5). Parquet is read :data:`PARQUET_BATCH_ROWS` rows at a
time from a local spool file, its column chunks through a bounded read buffer.
A file that cannot be read (or is larger than allowed once decompressed) raises
:class:`UnreadableFileError`, which sends it to ``quarantine/``.
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

from events_pipeline.common.errors import PipelineError

#: Bytes of the (decompressed) stream per chunk, i.e. per block of lines: a file's first
#: chunk is FIRST_CHUNK_BYTES (PostgreSQL gets rows soon), each next one twice the last,
#: up to CHUNK_BYTES. The vectorised path costs ~3.5 ms per block whatever its size, so
#: big blocks are cheaper per event (2 MB ones: -9 % CPU against 1 MB); see
#: ``bench_ingest.py --compare-blocks``.
CHUNK_BYTES = 2 << 20
FIRST_CHUNK_BYTES = 512 << 10
#: A longer line is rejected (its first LONG_LINE_RAW_BYTES bytes go to rejected/ for a person).
MAX_LINE_BYTES = 64 << 20
LONG_LINE_RAW_BYTES = 1024
#: Compressed bytes read from a gzip stream at a time.
GZIP_READ_BYTES = 256 << 10
#: Rows per Parquet batch (the rows of one batch are in memory at once).
PARQUET_BATCH_ROWS = 10_000
#: Read buffer of Parquet column chunks: pages are read through it, not whole chunks.
PARQUET_READ_BUFFER_BYTES = 1 << 20
#: The Variable that bounds a file's decompressed size (registered by ``ingest.pipeline``).
VAR_MAX_FILE_BYTES = "events_ingest_max_file_bytes"
#: Called with (line number, its size in bytes) for each line longer than MAX_LINE_BYTES.
LongLineHandler = Callable[[int, int], None]
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
#: The endings of landing object names that name their format (longest first).
LANDING_SUFFIXES = tuple(suffix for suffix, _ in _SUFFIXES)


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


def iter_line_blocks(
    stream: IO[bytes],
    *,
    gzipped: bool,
    on_long_line: LongLineHandler | None = None,
    max_bytes: int | None = None,
) -> Iterator[list[str]]:
    """Yield the file's lines, decoded from UTF-8, in blocks (one block per chunk).

    Line endings (``\\n``) are removed; a ``\\r`` before them is kept (JSON
    treats it as whitespace). A UTF-8 byte-order mark at the start is dropped.

    :param stream: a binary file object (an S3 ``StreamingBody``, a local file).
    :param gzipped: the stream is gzip-compressed (several members allowed).
    :param on_long_line: see :func:`iter_byte_blocks`.
    :param max_bytes: see :func:`iter_byte_blocks`.
    :raises UnreadableFileError: corrupt gzip, bytes that are not UTF-8 (names the line),
        or more than ``max_bytes``.
    """
    for block in iter_byte_blocks(stream, gzipped=gzipped, on_long_line=on_long_line, max_bytes=max_bytes):
        yield block.decode("utf-8").split("\n")


def iter_byte_blocks(
    stream: IO[bytes],
    *,
    gzipped: bool,
    on_long_line: LongLineHandler | None = None,
    max_bytes: int | None = None,
) -> Iterator[bytes]:
    """Yield the file's lines in blocks of UTF-8 bytes (lines joined by ``\\n``, none after the last).

    The same blocks as :func:`iter_line_blocks`, still encoded: every block is
    checked to be valid UTF-8 before it is handed out (so a decode of it, or of
    any of its lines, cannot fail), and ``block.split(b"\\n")`` gives the lines.

    A line longer than :data:`MAX_LINE_BYTES` is read through (checked to be UTF-8)
    without being kept: it is handed out as its first :data:`LONG_LINE_RAW_BYTES`
    bytes, and ``on_long_line`` is called with its number and size BEFORE the block
    holding it is yielded (so the caller can reject that line by its number).

    :param stream: a binary file object (an S3 ``StreamingBody``, a local file).
    :param gzipped: the stream is gzip-compressed (several members allowed).
    :param on_long_line: called for each line longer than :data:`MAX_LINE_BYTES`.
    :param max_bytes: most (decompressed) bytes the file may have (None: no limit).
    :raises UnreadableFileError: corrupt gzip, bytes that are not UTF-8 (names the line),
        or more than ``max_bytes`` (``too_large``).
    """
    carry = b""
    lines_before = 0
    first = True
    total = 0
    long_line: _LongLine | None = None  # a line longer than MAX_LINE_BYTES being read through
    for chunk in _raw_chunks(stream, gzipped):
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise UnreadableFileError(
                "too_large",
                f"the file holds more than {max_bytes} bytes (decompressed); Variable {VAR_MAX_FILE_BYTES} "
                "bounds one file, which is loaded in one transaction: split it",
                lines_before + 1,
            )
        if first:
            first = False
            if chunk.startswith(UTF8_BOM):
                chunk = chunk[len(UTF8_BOM) :]
            elif not gzipped and chunk.startswith(GZIP_MAGIC):
                raise UnreadableFileError(
                    "invalid_utf8", "file starts with gzip magic bytes but its name has no .gz suffix", 1
                )
        if long_line is not None:
            cut = chunk.find(b"\n")
            if cut == -1:
                long_line.feed(chunk)
                continue
            long_line.feed(chunk[:cut])
            yield long_line.finish(on_long_line)
            lines_before += 1
            long_line, chunk = None, chunk[cut + 1 :]
        data = carry + chunk if carry else chunk
        cut = data.rfind(b"\n")
        if cut == -1:
            carry = data
            if len(carry) > MAX_LINE_BYTES:
                long_line, carry = _LongLine(carry, lines_before + 1), b""
            continue
        carry = data[cut + 1 :]
        block = data[:cut]
        if len(block) > MAX_LINE_BYTES:  # may hold a line that is too long (never with normal lines)
            block = _shorten_long_lines(block, lines_before, on_long_line)
        if not block.isascii():  # ASCII is UTF-8 (isascii is a word-at-a-time scan, no copy)
            _decode(block, lines_before)
        lines_before += block.count(b"\n") + 1
        yield block
    if long_line is not None:
        yield long_line.finish(on_long_line)
    elif carry:
        if len(carry) > MAX_LINE_BYTES:
            carry = _shorten_long_lines(carry, lines_before, on_long_line)
        if not carry.isascii():
            _decode(carry, lines_before)
        yield carry


class _LongLine:
    """A line longer than :data:`MAX_LINE_BYTES`, read through: its start is kept, the rest only checked.

    :param start: the line's bytes so far.
    :param line: its 1-based line number.
    """

    def __init__(self, start: bytes, line: int) -> None:
        self.line = line
        self.size = 0
        self.prefix = start[:LONG_LINE_RAW_BYTES]
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.feed(start)

    def feed(self, data: bytes) -> None:
        """Check the next bytes of the line (UTF-8) and count them.

        :raises UnreadableFileError: they are not UTF-8 (naming the line).
        """
        self.size += len(data)
        try:
            self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise _not_utf8(exc, self.line) from None

    def finish(self, on_long_line: LongLineHandler | None) -> bytes:
        """Report the line (``on_long_line``); return what stands for it (its start, whole characters).

        :param on_long_line: the caller's handler.
        :raises UnreadableFileError: the line ends inside a UTF-8 sequence.
        """
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise _not_utf8(exc, self.line) from None
        if on_long_line is not None:
            on_long_line(self.line, self.size)
        return self.prefix.decode("utf-8", "ignore").encode("utf-8")


def _shorten_long_lines(block: bytes, lines_before: int, on_long_line: LongLineHandler | None) -> bytes:
    """Replace each line of ``block`` longer than :data:`MAX_LINE_BYTES` by its start, reporting it.

    :param block: whole lines joined by ``\\n``.
    :param lines_before: lines of the file before the block.
    :param on_long_line: the caller's handler.
    :raises UnreadableFileError: such a line is not UTF-8.
    """
    lines = block.split(b"\n")
    for i, line in enumerate(lines):
        if len(line) > MAX_LINE_BYTES:
            long_line = _LongLine(line, lines_before + i + 1)
            lines[i] = long_line.finish(on_long_line)
    return b"\n".join(lines)


def _not_utf8(exc: UnicodeDecodeError, line: int) -> UnreadableFileError:
    return UnreadableFileError(
        "invalid_utf8",
        f"bytes {exc.object[exc.start : exc.start + 4]!r} are not UTF-8 (the file must be UTF-8 throughout)",
        line,
    )


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


def parquet_rows(path: str | IO[bytes]) -> int:
    """The number of rows a local Parquet file declares (its footer; nothing else is read).

    :param path: a local file path or seekable binary file.
    :raises UnreadableFileError: the file is not valid Parquet.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError("corrupt_parquet", f"not a readable Parquet file: {exc}") from None


def iter_parquet_batches(path: str | IO[bytes]) -> Iterator[list[dict[str, Any]]]:
    """Yield the rows of a local Parquet file as blocks of at most :data:`PARQUET_BATCH_ROWS` dicts.

    Column chunks are read through a :data:`PARQUET_READ_BUFFER_BYTES` buffer, page by
    page, so memory is bounded by the batch, not by the row group.

    :param path: a local file path or seekable binary file (the landing object spooled to disk).
    :raises UnreadableFileError: the file is not valid Parquet.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path, buffer_size=PARQUET_READ_BUFFER_BYTES, pre_buffer=False)
        batches = pf.iter_batches(batch_size=PARQUET_BATCH_ROWS)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            yield batch.to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError("corrupt_parquet", f"not a readable Parquet file: {exc}") from None
