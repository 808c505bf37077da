"""Arrow batches -> Parquet parts, without services (batches as the ADBC reader yields them)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from events_pipeline.export.formats import ExportOptions, encode_jsonl
from events_pipeline.export.parquet_parts import (
    COLUMNS,
    PartSettings,
    arrow_schema,
    describe_parquet,
    describe_part,
    sha256_file,
    write_parts,
)
from tests.unit.export.golden_parts import GOLDEN_PARTS, GOLDEN_PYARROW, awkward_row

T0 = datetime(2026, 11, 27, 3, tzinfo=UTC)


def _row(i: int, *, url: str = "https://acme.com/") -> dict:
    return {
        "event_id": f"00000000-0000-4000-8000-{i:012d}",
        "event_type": "pageview",
        "session_id": None,
        "visitor_id": "v_1",
        "site_id": "acme.com",
        "timestamp": T0 + timedelta(seconds=i, microseconds=123456),
        "url": url,
        "path": "/",
        "user_agent": "",
        "ip_address": "2001:db8::1",
        "raw_event_data": '{"a": 1, "s": "x,y"}',
        "created_at": T0 + timedelta(seconds=i),
        "batch_id": "b1",
        "client_id": "acme",
    }


def _batches(rows: list[dict], size: int) -> list[pa.RecordBatch]:
    """Cut ``rows`` into record batches of ``size`` rows (unaligned with the row groups)."""
    schema = arrow_schema()
    assert [f.name for f in schema] == [n for n, _ in COLUMNS]
    return [pa.RecordBatch.from_pylist(rows[i : i + size], schema=schema) for i in range(0, len(rows), size)]


def test_parts_roll_over_at_the_row_bound(tmp_path):
    uploaded = []

    def on_part(path, info):
        assert path.exists() and sha256_file(path) == info.sha256
        assert info.bytes == path.stat().st_size
        uploaded.append((info, pq.ParquetFile(path).metadata, pq.read_table(path)))

    settings = PartSettings(part_max_rows=100, row_group_rows=30)
    batches = _batches([_row(i) for i in range(250)], 17)
    parts = write_parts(iter(batches), tmp_path, on_part, settings)
    assert [p.key for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [p.rows for p in parts] == [100, 100, 50]
    assert [t.num_rows for _, _, t in uploaded] == [100, 100, 50]
    assert list(tmp_path.iterdir()) == []  # parts are deleted once handed over
    ids = [r for _, _, t in uploaded for r in t.column("event_id").to_pylist()]
    assert ids == [f"00000000-0000-4000-8000-{i:012d}" for i in range(250)]
    # whole row groups of 30, the part's last one cut at the part bound
    meta = uploaded[0][1]
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [30, 30, 30, 10]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert uploaded[0][2].schema == arrow_schema()


def test_parts_roll_over_at_the_byte_bound(tmp_path):
    rows = [_row(i, url="https://acme.com/" + "x" * 500 + str(i)) for i in range(400)]
    settings = PartSettings(part_max_rows=10_000, part_max_bytes=2_000, row_group_rows=50)
    parts = write_parts(iter(_batches(rows, 64)), tmp_path, lambda p, i: None, settings)
    assert len(parts) > 1
    assert sum(p.rows for p in parts) == 400


def test_empty_batches_are_skipped_and_no_rows_no_parts(tmp_path):
    empty = arrow_schema().empty_table().to_batches() or [pa.RecordBatch.from_pylist([], arrow_schema())]
    assert write_parts(iter(empty), tmp_path, lambda p, i: None) == []
    assert write_parts(iter([]), tmp_path, lambda p, i: None) == []


def test_describe_parquet_matches_what_write_parts_reports(tmp_path):
    bodies = {}

    def on_part(path, info):
        bodies[info.key] = (path.read_bytes(), info)

    write_parts(iter(_batches([_row(i) for i in range(7)], 3)), tmp_path, on_part)
    (body, info) = bodies["part-00000.parquet"]
    assert describe_parquet("part-00000.parquet", body) == info
    described = describe_parquet("any-name", body)
    assert (described.key, described.rows, described.bytes) == ("any-name", 7, len(body))
    assert described.sha256 == hashlib.sha256(body).hexdigest()


def test_describe_parquet_refuses_what_is_not_parquet():
    with pytest.raises(pa.ArrowInvalid):
        describe_parquet("x.parquet", b"not parquet at all")


def test_settings_must_be_positive():
    with pytest.raises(ValueError, match="part_max_rows"):
        PartSettings(part_max_rows=0)


def test_schema_types():
    schema = arrow_schema()
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("ip_address").type == pa.string()
    assert not schema.field("event_id").nullable and schema.field("session_id").nullable


@pytest.mark.parametrize("snapshot", ["00000004-00000008-1", "0000000A-0000001B-2F"])
def test_snapshot_ids_are_accepted(snapshot):
    from events_pipeline.export.parquet_parts import _snapshot_literal

    assert _snapshot_literal(snapshot) == snapshot


@pytest.mark.parametrize("snapshot", ["", "1", "00000004-00000008-1'; DROP TABLE x; --", "abc-xyz"])
def test_anything_else_is_refused_as_a_snapshot_id(snapshot):
    from events_pipeline.export.parquet_parts import _snapshot_literal

    with pytest.raises(ValueError, match="snapshot id"):
        _snapshot_literal(snapshot)


GOLDEN_SETTINGS = {
    "defaults": PartSettings(),
    "rows=100 row_group=30": PartSettings(part_max_rows=100, row_group_rows=30),
    "bytes=6000 row_group=40": PartSettings(part_max_bytes=6000, row_group_rows=40),
}


@pytest.mark.skipif(
    pa.__version__ != GOLDEN_PYARROW, reason=f"golden bytes computed with pyarrow {GOLDEN_PYARROW}"
)
@pytest.mark.parametrize("case", sorted(GOLDEN_PARTS))
def test_default_options_write_byte_identical_parts_to_before(tmp_path, case):
    settings = GOLDEN_SETTINGS[case].with_options(ExportOptions())  # a client without options
    assert settings == GOLDEN_SETTINGS[case]
    parts = write_parts(
        iter(_batches([awkward_row(i) for i in range(250)], 17)), tmp_path, lambda p, i: None, settings
    )
    assert [(p.key, p.rows, p.sha256) for p in parts] == GOLDEN_PARTS[case]
    assert {p.content_type for p in parts} == {"application/vnd.apache.parquet"}


@pytest.mark.parametrize("codec", ["zstd", "gzip", "snappy", "none"])
def test_parquet_codecs(tmp_path, codec):
    got = {}

    def on_part(path, info):
        got[info.key] = (pq.ParquetFile(path).metadata, pq.read_table(path))

    settings = PartSettings(compression=codec)
    rows = [awkward_row(i) for i in range(40)]
    write_parts(iter(_batches(rows, 17)), tmp_path, on_part, settings)
    meta, table = got["part-00000.parquet"]
    assert meta.row_group(0).column(0).compression == ("UNCOMPRESSED" if codec == "none" else codec.upper())
    assert table.to_pylist() == pa.Table.from_pylist(rows, schema=arrow_schema()).to_pylist()


@pytest.mark.parametrize(
    ("codec", "ext"), [("none", ".jsonl"), ("gzip", ".jsonl.gz"), ("zstd", ".jsonl.zst")]
)
def test_jsonl_parts_roll_over_and_hold_every_row(tmp_path, codec, ext):
    from events_pipeline.export.formats import decompress

    bodies = {}

    def on_part(path, info):
        bodies[info.key] = (path.read_bytes(), info)

    rows = [awkward_row(i) for i in range(250)]
    settings = PartSettings(part_max_rows=100, row_group_rows=30, format="jsonl", compression=codec)
    parts = write_parts(iter(_batches(rows, 17)), tmp_path, on_part, settings)
    assert [p.key for p in parts] == [f"part-0000{i}{ext}" for i in range(3)]
    assert [p.rows for p in parts] == [100, 100, 50]
    text = b"".join(decompress(bodies[p.key][0], codec) for p in parts)
    assert text == encode_jsonl(pa.Table.from_pylist(rows, schema=arrow_schema()))
    for body, info in bodies.values():
        assert describe_part(info.key, body) == info
    # the same rows give the same bytes (re-runs rewrite identical objects)
    again = {}
    write_parts(iter(_batches(rows, 33)), tmp_path, lambda p, i: again.setdefault(i.key, i.sha256), settings)
    assert again == {k: info.sha256 for k, (_, info) in bodies.items()}


def test_jsonl_parts_roll_over_at_the_byte_bound(tmp_path):
    rows = [awkward_row(i) for i in range(400)]
    settings = PartSettings(part_max_bytes=20_000, row_group_rows=50, format="jsonl", compression="none")
    parts = write_parts(iter(_batches(rows, 64)), tmp_path, lambda p, i: None, settings)
    assert len(parts) > 1 and sum(p.rows for p in parts) == 400


def test_settings_take_a_clients_options_and_refuse_invalid_pairs():
    base = PartSettings(part_max_rows=5000, part_max_bytes=10_000_000)
    jsonl = base.with_options(ExportOptions("jsonl", "gzip", part_max_rows=2000))
    assert (jsonl.format, jsonl.compression, jsonl.part_max_rows, jsonl.part_max_bytes) == (
        "jsonl",
        "gzip",
        2000,
        10_000_000,
    )
    assert (jsonl.extension, jsonl.content_type) == (".jsonl.gz", "application/gzip")
    assert base.with_options(ExportOptions(part_max_bytes=2_000_000)).part_max_bytes == 2_000_000
    with pytest.raises(ValueError, match="snappy"):
        PartSettings(format="jsonl", compression="snappy")


def test_describe_part_knows_every_format():
    import gzip

    line = b'{"a":1}\n'
    assert describe_part("part-00000.jsonl", line * 3).rows == 3
    info = describe_part("part-00000.jsonl.gz", gzip.compress(line * 2))
    assert (info.rows, info.content_type) == (2, "application/gzip")
    with pytest.raises(ValueError, match="not an export part"):
        describe_part("part-00000.csv", b"")
