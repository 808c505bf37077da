"""Unit tests of ingest's erased-visitor filter and of the format-preserving rewrite of landing files."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from events_pipeline.ingest.erased_visitors import ErasedVisitors
from events_pipeline.ingest.landing_rewrite import (
    UnreadableObjectError,
    file_without_lines,
    ndjson_without_lines,
)
from events_pipeline.privacy.visitor_digest import DIGEST_SEPARATOR, visitor_digest

THROUGH = datetime(2026, 11, 27, 12, tzinfo=UTC)
ERASED = ErasedVisitors([("acme", visitor_digest("acme", "v1"), THROUGH, 11)])


def test_empty_tombstones_are_falsy() -> None:
    assert not ErasedVisitors()
    assert ERASED and len(ERASED) == 1 and ERASED.clients == {"acme"}


def test_event_of_the_erased_visitor_up_to_erased_through_is_covered() -> None:
    assert ERASED.erased_by("acme", "v1", THROUGH - timedelta(days=3)) == 11
    assert ERASED.erased_by("acme", "v1", THROUGH) == 11
    assert ERASED.erased_by("acme", "v1", None) == 11  # no readable timestamp: nothing shows it came later


def test_visitor_back_after_the_erasure_other_clients_and_visitors_are_kept() -> None:
    assert ERASED.erased_by("acme", "v1", THROUGH + timedelta(microseconds=1)) is None
    assert ERASED.erased_by("globex", "v1", THROUGH) is None
    assert ERASED.erased_by("acme", "v2", THROUGH) is None
    assert ERASED.erased_by("", "v1", THROUGH) is None
    assert ERASED.erased_by(None, "v1", THROUGH) is None
    assert ERASED.erased_by("acme", 12, THROUGH) is None


def test_matching_keys_spell_the_digest_input() -> None:
    keys = [f"acme{DIGEST_SEPARATOR}v1", f"acme{DIGEST_SEPARATOR}v2", f"globex{DIGEST_SEPARATOR}v1"]
    assert ERASED.matching_keys(keys) == [f"acme{DIGEST_SEPARATOR}v1"]


@pytest.mark.parametrize(
    ("data", "drop", "expected", "removed"),
    [
        (b"a\nb\nc\n", {2}, b"a\nc\n", 1),
        (b"a\nb\nc", {3}, b"a\nb\n", 1),
        (b"a\r\n\nb\rx\nc", {1, 4}, b"\nb\rx\n", 2),
        (b"\xef\xbb\xbfa\nb\n", {1}, b"\xef\xbb\xbfb\n", 1),
        (b"a\nb\n", set(), b"a\nb\n", 0),
        (b"a\nb\n", {3, 9}, b"a\nb\n", 0),
    ],
)
def test_ndjson_lines_numbered_as_ingest_numbers_them(
    data: bytes, drop: set[int], expected: bytes, removed: int
) -> None:
    out = io.BytesIO()
    assert ndjson_without_lines(io.BytesIO(data), out, drop) == removed
    assert out.getvalue() == expected


def test_ndjson_long_input_across_chunks() -> None:
    lines = [f'{{"n":{i},"pad":"{"x" * (i % 700)}"}}'.encode() for i in range(5000)]
    data = b"\n".join(lines) + b"\n"
    out = io.BytesIO()
    drop = set(range(1, 5001, 7))
    assert ndjson_without_lines(io.BytesIO(data), out, drop) == len(drop)
    assert out.getvalue() == b"".join(line + b"\n" for n, line in enumerate(lines, 1) if n not in drop)


def test_gzip_of_several_members_is_written_again_as_gzip() -> None:
    data = gzip.compress(b"a\nb\n") + gzip.compress(b"c\nd\n")
    out = io.BytesIO()
    assert file_without_lines(".ndjson.gz", io.BytesIO(data), out, {2, 3}) == 2
    assert gzip.decompress(out.getvalue()) == b"a\nd\n"


def test_corrupt_gzip_is_unreadable() -> None:
    with pytest.raises(UnreadableObjectError):
        file_without_lines(".jsonl.gz", io.BytesIO(b"not gzip at all"), io.BytesIO(), {1})


def test_parquet_rows_dropped_schema_and_codec_kept() -> None:
    table = pa.table({"visitor_id": ["a", "b", "c", "d"], "n": pa.array([1, 2, 3, 4], pa.int16())})
    src = io.BytesIO()
    pq.write_table(table, src, compression="gzip")
    src.seek(0)
    out = io.BytesIO()
    assert file_without_lines(".parquet", src, out, {1, 3}) == 2
    out.seek(0)
    written = pq.ParquetFile(out)
    assert written.schema_arrow == table.schema
    assert written.metadata.row_group(0).column(0).compression == "GZIP"
    assert written.read().to_pylist() == [{"visitor_id": "b", "n": 2}, {"visitor_id": "d", "n": 4}]
