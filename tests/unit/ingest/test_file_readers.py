"""Streaming readers: line blocks across chunk boundaries, gzip members, and unreadable files."""

from __future__ import annotations

import gzip
import io
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events_pipeline.ingest import file_readers as readers
from events_pipeline.ingest.file_readers import (
    UnreadableFileError,
    file_format,
    iter_line_blocks,
    iter_parquet_batches,
)


def _lines(data: bytes, *, gzipped: bool = False) -> list[str]:
    return [line for block in iter_line_blocks(io.BytesIO(data), gzipped=gzipped) for line in block]


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force 7-byte chunks so lines and multi-byte characters straddle chunk boundaries."""
    monkeypatch.setattr(readers, "CHUNK_BYTES", 7)


@pytest.mark.usefixtures("tiny_chunks")
def test_lines_survive_chunk_boundaries() -> None:
    text = '{"a":"日本語"}\n{"b":"🎉🎉"}\n\n{"c":1}'
    assert _lines(text.encode()) == ['{"a":"日本語"}', '{"b":"🎉🎉"}', "", '{"c":1}']


def test_trailing_newline_gives_no_extra_line_and_crlf_keeps_cr() -> None:
    assert _lines(b"a\r\nb\n") == ["a\r", "b"]


def test_bom_is_dropped() -> None:
    assert _lines(b"\xef\xbb\xbf{}\n") == ["{}"]


@pytest.mark.usefixtures("tiny_chunks")
def test_gzip_multi_member() -> None:
    data = gzip.compress(b"one\ntw") + gzip.compress(b"o\nthree\n")
    assert _lines(data, gzipped=True) == ["one", "two", "three"]


def test_empty_inputs() -> None:
    assert _lines(b"") == []
    assert _lines(gzip.compress(b""), gzipped=True) == []
    assert _lines(b"", gzipped=True) == []


@pytest.mark.usefixtures("tiny_chunks")
def test_invalid_utf8_names_the_line() -> None:
    data = b'{"a":1}\n{"b":2}\n{"c":"caf\xe9"}\n'
    with pytest.raises(UnreadableFileError) as exc:
        _lines(data)
    assert exc.value.kind == "invalid_utf8"
    assert exc.value.line == 3


@pytest.mark.parametrize(
    "data",
    [b"\x1f\x8b\x08\x00garbage" * 3, gzip.compress(b"x" * 10_000)[:40], b"plain text, not gzip\n"],
    ids=["corrupt", "truncated", "not-gzip"],
)
def test_corrupt_gzip(data: bytes) -> None:
    with pytest.raises(UnreadableFileError) as exc:
        _lines(data, gzipped=True)
    assert exc.value.kind == "corrupt_gzip"


@settings(max_examples=300, deadline=None)
@given(
    members=st.lists(
        st.tuples(
            st.one_of(st.binary(max_size=300), st.binary(min_size=1, max_size=3).map(lambda b: b * 400)),
            st.integers(0, 3),  # NUL padding after the member
        ),
        max_size=4,
    ),
    chunk=st.integers(1, 64),
    read=st.integers(1, 64),
)
def test_gunzip_chunks_equal_gzip_decompress(members: list[tuple[bytes, int]], chunk: int, read: int) -> None:
    """Tiny output chunks and source reads hit every boundary: member ends, long matches, padding."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(readers, "CHUNK_BYTES", chunk)
        patch.setattr(readers, "GZIP_READ_BYTES", read)
        _check_gunzip(members, chunk)


def _check_gunzip(members: list[tuple[bytes, int]], chunk: int) -> None:
    data = b"".join(gzip.compress(body, mtime=0) + b"\x00" * pad for body, pad in members)
    chunks = list(readers._gunzip_chunks(io.BytesIO(data)))
    assert b"".join(chunks) == gzip.decompress(data)  # the reference (NUL padding allowed too)
    assert all(len(c) == chunk for c in chunks[:-1]) and all(0 < len(c) <= chunk for c in chunks)
    body = b"".join(body for body, _ in members)
    if body:  # cut anywhere inside the last member: an error, never silently fewer bytes
        last = gzip.compress(members[-1][0], mtime=0)
        cut = len(data) - members[-1][1] - len(last) + len(last) // 2
        with pytest.raises(zlib.error):
            list(readers._gunzip_chunks(io.BytesIO(data[:cut])))


def test_gzip_bytes_without_gz_suffix_are_explained() -> None:
    with pytest.raises(UnreadableFileError, match="gzip magic bytes"):
        _lines(gzip.compress(b"{}\n"))


@pytest.mark.parametrize(
    ("key", "fmt"),
    [
        ("incoming/a.ndjson", "ndjson"),
        ("incoming/a.JSONL", "ndjson"),
        ("incoming/a.ndjson.gz", "ndjson.gz"),
        ("incoming/a.jsonl.gz", "ndjson.gz"),
        ("incoming/a.parquet", "parquet"),
    ],
)
def test_file_format(key: str, fmt: str) -> None:
    assert file_format(key) == fmt


@pytest.mark.parametrize("key", ["incoming/a.csv", "incoming/a.json", "incoming/a.gz", "incoming/a"])
def test_unsupported_format(key: str) -> None:
    with pytest.raises(UnreadableFileError) as exc:
        file_format(key)
    assert exc.value.kind == "unsupported_format"


def test_parquet_rows(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 2)
    buf = io.BytesIO()
    pq.write_table(pa.table({"event_type": ["a", "b", "c"], "n": [1, 2, 3]}), buf)
    buf.seek(0)
    blocks = list(iter_parquet_batches(buf))
    assert [len(b) for b in blocks] == [2, 1]
    assert blocks[1] == [{"event_type": "c", "n": 3}]


def test_corrupt_parquet() -> None:
    with pytest.raises(UnreadableFileError) as exc:
        list(iter_parquet_batches(io.BytesIO(b"PAR1 nope")))
    assert exc.value.kind == "corrupt_parquet"


@pytest.mark.parametrize("gzipped", [False, True])
def test_chunks_start_small_and_double_up_to_the_limit(gzipped: bool) -> None:
    """The first block reaches PostgreSQL soon; later ones are big (cheaper per event)."""
    data = bytes(range(256)) * (12 * 4096)  # 12 MB
    stream = io.BytesIO(gzip.compress(data) if gzipped else data)
    sizes = [len(c) for c in readers._raw_chunks(stream, gzipped)]
    first = readers.FIRST_CHUNK_BYTES
    assert sizes[:4] == [first, 2 * first, 4 * first, readers.CHUNK_BYTES]
    assert all(s == readers.CHUNK_BYTES for s in sizes[3:-1]) and sum(sizes) == len(data)
