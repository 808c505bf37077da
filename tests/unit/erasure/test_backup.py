"""Pure parts of erasure's backup step: Parquet filtering, where the client's twins of backup objects are."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from events_pipeline.common.intervals import HourInterval
from events_pipeline.erasure.backup import BackupPurge, filter_parquet
from events_pipeline.export.keys import MANIFEST_NAME, backup_location, client_location


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


class _Cursor:
    """What ``conn.execute(client_config.sql)`` returns: one ``clients`` row, or none."""

    def __init__(self, row: tuple[Any, ...] | None) -> None:
        self.description = [
            (n,) for n in ("client_id", "active", "export_bucket", "export_prefix", "export_conn_id")
        ]
        self.row = row

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.row


class _Conn:
    def __init__(self, row: tuple[Any, ...] | None) -> None:
        self.row = row

    def execute(self, sql: str, params: Any = None) -> _Cursor:
        assert "FROM clients" in sql and params == {"client_id": "acme"}
        return _Cursor(self.row)


def _purge(row: tuple[Any, ...] | None) -> BackupPurge:
    return BackupPurge(_Conn(row), s3=None, bucket="test-backup", client_id="acme", wanted=[])


H = HourInterval(datetime(2026, 12, 31, 23, tzinfo=UTC))


@pytest.mark.parametrize("name", ["part-00000.parquet", "part-0.parquet", MANIFEST_NAME])
def test_client_twins_are_where_the_export_puts_the_same_hour(name):
    purge = _purge(("acme", True, "acme-exports", "events/acme", None))
    folder = backup_location("acme", "test-backup", H).folder
    expected = client_location("acme", "acme-exports", "events/acme", H).uri(name)
    assert expected == f"s3://acme-exports/events/acme/dt=2026-12-31/hour=23/{name}"
    assert purge.client_uri(folder, name) == expected


@pytest.mark.parametrize(
    "folder",
    [
        "acme/misc",  # not an hour's folder
        "acme/x/dt=2026-12-31/hour=23",  # an hour, but not where the export puts the client's backups
        "acme/dt=2026-12-31/hour=23/sub",
    ],
)
def test_folders_outside_the_layout_have_no_client_twin(folder):
    purge = _purge(("acme", True, "acme-exports", "events/acme", None))
    assert purge.client_uri(folder, "p.parquet") is None


def test_no_client_twin_without_a_client_or_with_a_prefix_the_export_refuses():
    folder = backup_location("acme", "test-backup", H).folder
    assert _purge(None).client_uri(folder, "part-00000.parquet") is None
    refused = _purge(("acme", True, "acme-exports", "events/../x", None))
    assert refused.client_uri(folder, "p.parquet") is None


@pytest.mark.parametrize("name", ["part-00000.jsonl", "part-00000.jsonl.gz", "part-00000.jsonl.zst"])
def test_json_lines_parts_lose_the_visitors_lines_and_keep_their_compression(name):
    from events_pipeline.erasure.backup import describe_part, filter_jsonl
    from events_pipeline.export.formats import compress, decompress, file_type_of

    lines = [b'{"event_id":"1","visitor_id":"a"}\n', b'{"event_id":"2","visitor_id":"b"}\n']
    lines.append(b'{"event_id":"3","visitor_id":null}\n')
    compression = file_type_of(name)[1] or "none"
    data = compress(b"".join(lines), compression)
    new, removed, left = filter_jsonl(name, data, {"a"})
    assert decompress(new, compression) == lines[1] + lines[2]
    assert dict(removed) == {"a": 1} and left == 2
    assert filter_jsonl(name, data, {"zz"}) is None
    assert describe_part(name, new).rows == 2
