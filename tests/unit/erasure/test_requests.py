"""Pure parts of erasure: manifest key resolution and Parquet filtering."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from events_pipeline.erasure.requests import filter_parquet, resolve_key

MANIFEST = "acme/dt=2026-11-20/hour=05/_manifest.json"


@pytest.mark.parametrize(
    ("file_key", "expected"),
    [
        ("part-0.parquet", "acme/dt=2026-11-20/hour=05/part-0.parquet"),
        ("acme/dt=2026-11-20/hour=05/part-0.parquet", "acme/dt=2026-11-20/hour=05/part-0.parquet"),
        ("s3://test-backup/acme/dt=2026-11-20/hour=05/p.parquet", "acme/dt=2026-11-20/hour=05/p.parquet"),
        ("sub/part-0.parquet", "acme/dt=2026-11-20/hour=05/sub/part-0.parquet"),
    ],
)
def test_resolve_key(file_key, expected):
    assert resolve_key(MANIFEST, file_key) == expected


def _parquet(visitors):
    schema = pa.schema([("visitor_id", pa.string()), ("n", pa.int64())], metadata={b"origin": b"export"})
    table = pa.Table.from_pydict({"visitor_id": visitors, "n": list(range(len(visitors)))}, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue(), schema


def test_filter_parquet_removes_only_the_visitors():
    data, schema = _parquet(["a", "b", None, "a", "c"])
    new, removed, left = filter_parquet(data, {"a", "c"})
    table = pq.read_table(io.BytesIO(new))
    assert table.column("visitor_id").to_pylist() == ["b", None]
    assert table.column("n").to_pylist() == [1, 2]
    assert table.schema.equals(schema, check_metadata=False)
    assert table.schema.metadata[b"origin"] == b"export"
    assert dict(removed) == {"a": 2, "c": 1} and left == 2
    assert pq.ParquetFile(io.BytesIO(new)).metadata.row_group(0).column(0).compression == "ZSTD"


def test_filter_parquet_no_match_returns_none():
    data, _ = _parquet(["a", "b"])
    assert filter_parquet(data, {"zz"}) is None
