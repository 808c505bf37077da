"""Large input (contract §2.5, §2.6): a line over the limit is one rejected line, not an unreadable
file; a file over its decompressed-size cap is unreadable; Parquet is read a bounded batch at a time."""

from __future__ import annotations

import gzip
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from events_pipeline.ingest import file_readers
from events_pipeline.ingest.file_readers import UnreadableFileError, iter_byte_blocks, iter_parquet_batches


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines over 100 bytes are too long (their first 10 bytes stand for them); chunks of 64 bytes."""
    monkeypatch.setattr(file_readers, "MAX_LINE_BYTES", 100)
    monkeypatch.setattr(file_readers, "LONG_LINE_RAW_BYTES", 10)
    monkeypatch.setattr(file_readers, "FIRST_CHUNK_BYTES", 64)
    monkeypatch.setattr(file_readers, "CHUNK_BYTES", 64)


def _read(data: bytes, *, gzipped: bool = False, max_bytes: int | None = None) -> tuple[list[bytes], list]:
    reported: list[tuple[int, int]] = []
    stream = io.BytesIO(gzip.compress(data) if gzipped else data)
    blocks = iter_byte_blocks(
        stream,
        gzipped=gzipped,
        on_long_line=lambda line, size: reported.append((line, size)),
        max_bytes=max_bytes,
    )
    return b"\n".join(blocks).split(b"\n"), reported


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.usefixtures("small_limits")
def test_a_line_over_the_limit_is_reported_and_stands_as_its_start(gzipped: bool) -> None:
    long = b'{"event_type":"' + "é".encode() * 200 + b'"}'  # 407 bytes, over several chunks
    edge = b"x" * 101  # just over, inside one block
    data = b"\n".join([b'{"a":1}', long, b'{"b":2}', edge, b"x" * 100, b'{"c":3}', long])
    lines, reported = _read(data, gzipped=gzipped)
    # every line keeps its number: the long ones stand as their first 10 bytes (whole characters)
    assert lines == [b'{"a":1}', b'{"event_ty', b'{"b":2}', b"x" * 10, b"x" * 100, b'{"c":3}', b'{"event_ty']
    assert reported == [(2, len(long)), (4, 101), (7, len(long))]


@pytest.mark.usefixtures("small_limits")
def test_a_long_line_that_is_not_utf8_makes_the_file_unreadable_naming_its_line() -> None:
    data = b'{"a":1}\n' + b"y" * 150 + b"\xff" + b"y" * 50 + b"\n{}"
    with pytest.raises(UnreadableFileError) as caught:
        _read(data)
    assert (caught.value.kind, caught.value.line) == ("invalid_utf8", 2)


def test_a_file_over_the_decompressed_size_cap_is_too_large() -> None:
    data = b'{"a":1}\n' * 1000
    assert len(_read(data, max_bytes=len(data))[0]) == 1000  # at the cap: read
    with pytest.raises(UnreadableFileError) as caught:
        _read(data, gzipped=True, max_bytes=len(data) - 1)
    assert caught.value.kind == "too_large"
    assert "events_ingest_max_file_bytes" in caught.value.detail


def test_parquet_is_read_a_bounded_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_readers, "PARQUET_BATCH_ROWS", 3)
    buf = io.BytesIO()
    # one row group of 10 rows: batches must still be of 3 rows at most
    pq.write_table(pa.table({"event_type": [f"e{i}" for i in range(10)]}), buf, row_group_size=10)
    buf.seek(0)
    sizes = [len(batch) for batch in iter_parquet_batches(buf)]
    assert sizes == [3, 3, 3, 1]
    buf.seek(0)
    assert file_readers.parquet_rows(buf) == 10
