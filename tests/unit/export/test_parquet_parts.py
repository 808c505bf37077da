"""COPY-CSV -> Arrow -> Parquet parts, without services (the CSV is what PostgreSQL emits)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from events_pipeline.export.parquet_parts import (
    COLUMNS,
    PartSettings,
    arrow_schema,
    iter_record_batches,
    sha256_file,
    write_parts,
)


def _csv_line(i: int, *, url: str = "https://acme.com/", ua: str = "") -> bytes:
    # PostgreSQL CSV: NULL = unquoted empty field, empty string = "", quotes doubled
    quoted_ua = '""' if ua == "" else '"' + ua.replace('"', '""') + '"'
    quoted_url = '"' + url.replace('"', '""') + '"'
    fields = [
        f"00000000-0000-4000-8000-{i:012d}",
        "pageview",
        "",  # session_id NULL
        "v_1",
        "acme.com",
        f"2026-11-27 03:{i % 60:02d}:00.123456",
        quoted_url,
        "/",
        quoted_ua,
        "2001:db8::1",
        '"{""a"": 1, ""s"": ""x,y""}"',
        "2026-11-27 03:59:59.999999",
        "b1",
        "acme",
    ]
    assert len(fields) == len(COLUMNS)
    return (",".join(fields) + "\n").encode()


def _chunks(data: bytes, size: int = 7):
    for i in range(0, len(data), size):  # tiny, unaligned chunks like a network stream
        yield data[i : i + size]


def test_csv_is_parsed_with_real_types_nulls_and_quoted_newlines():
    data = _csv_line(0, url='https://acme.com/"q",\nnext', ua='Mozilla "5"') + _csv_line(1)
    batches = list(iter_record_batches(_chunks(data)))
    table = pa.Table.from_batches(batches)
    assert table.schema == arrow_schema()
    rows = table.to_pylist()
    assert rows[0]["url"] == 'https://acme.com/"q",\nnext'
    assert rows[0]["user_agent"] == 'Mozilla "5"'
    assert rows[1]["user_agent"] == ""
    assert rows[0]["session_id"] is None
    assert rows[0]["raw_event_data"] == '{"a": 1, "s": "x,y"}'
    assert rows[0]["timestamp"] == datetime(2026, 11, 27, 3, 0, 0, 123456, tzinfo=UTC)
    assert rows[0]["created_at"] == datetime(2026, 11, 27, 3, 59, 59, 999999, tzinfo=UTC)


def test_empty_stream_gives_no_batches():
    assert list(iter_record_batches(iter([b"", b""]))) == []


def test_parts_roll_over_at_the_row_bound(tmp_path):
    data = b"".join(_csv_line(i) for i in range(250))
    uploaded = []

    def on_part(path, info):
        assert path.exists() and sha256_file(path) == info.sha256
        uploaded.append((info, pq.read_table(path)))

    settings = PartSettings(part_max_rows=100, row_group_rows=30, csv_block_bytes=4096)
    parts = write_parts(iter_record_batches(_chunks(data, 999), 4096), tmp_path, on_part, settings)
    assert [p.key for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [p.rows for p in parts] == [100, 100, 50]
    assert [t.num_rows for _, t in uploaded] == [100, 100, 50]
    assert list(tmp_path.iterdir()) == []  # parts are deleted once handed over
    ids = [r for _, t in uploaded for r in t.column("event_id").to_pylist()]
    assert ids == [f"00000000-0000-4000-8000-{i:012d}" for i in range(250)]
    meta = pq.ParquetFile(io.BytesIO(_parquet_bytes(tmp_path, uploaded[0][1]))).metadata
    assert meta.num_row_groups >= 1


def _parquet_bytes(tmp_path, table) -> bytes:
    path = tmp_path / "x.parquet"
    pq.write_table(table, path, compression="zstd")
    data = path.read_bytes()
    path.unlink()
    return data


def test_parts_roll_over_at_the_byte_bound(tmp_path):
    data = b"".join(_csv_line(i, url="https://acme.com/" + "x" * 500 + str(i)) for i in range(400))
    settings = PartSettings(part_max_rows=10_000, part_max_bytes=2_000, row_group_rows=50)
    parts = write_parts(iter_record_batches(_chunks(data, 4096)), tmp_path, lambda p, i: None, settings)
    assert len(parts) > 1
    assert sum(p.rows for p in parts) == 400


def test_no_rows_no_parts(tmp_path):
    assert write_parts(iter([]), tmp_path, lambda p, i: None) == []


def test_settings_must_be_positive():
    with pytest.raises(ValueError, match="part_max_rows"):
        PartSettings(part_max_rows=0)


def test_prefetch_keeps_order_and_propagates_errors():
    from events_pipeline.export.parquet_parts import prefetch

    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))

    def boom():
        yield 1
        raise RuntimeError("copy failed at row 2")

    out = prefetch(boom())
    assert next(out) == 1
    with pytest.raises(RuntimeError, match="row 2"):
        next(out)


def test_prefetch_stops_when_the_consumer_stops():
    import itertools

    from events_pipeline.export.parquet_parts import prefetch

    produced = []

    def endless():
        for i in itertools.count():
            produced.append(i)
            yield i

    gen = prefetch(endless(), depth=2)
    assert [next(gen) for _ in range(5)] == [0, 1, 2, 3, 4]
    gen.close()  # joins the thread
    assert len(produced) <= 5 + 2 + 2


def test_a_row_larger_than_the_block_is_an_error_naming_it():
    import pyarrow as pa_

    data = _csv_line(0, url="https://acme.com/" + "x" * 5000) + _csv_line(1)
    with pytest.raises(pa_.ArrowInvalid, match="straddl"):
        list(iter_record_batches(_chunks(data, 512), block_bytes=1024))


@pytest.mark.parametrize("snapshot", ["00000004-00000008-1", "0000000A-0000001B-2F"])
def test_snapshot_ids_are_accepted(snapshot):
    from events_pipeline.export.parquet_parts import _snapshot_literal

    assert _snapshot_literal(snapshot) == snapshot


@pytest.mark.parametrize("snapshot", ["", "1", "00000004-00000008-1'; DROP TABLE x; --", "abc-xyz"])
def test_anything_else_is_refused_as_a_snapshot_id(snapshot):
    from events_pipeline.export.parquet_parts import _snapshot_literal

    with pytest.raises(ValueError, match="snapshot id"):
        _snapshot_literal(snapshot)
