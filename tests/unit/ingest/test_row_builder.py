"""COPY text rows from lines: escaping, attribution, GDPR, rejects, NUL, counters."""

from __future__ import annotations

import orjson
import pytest

from events_pipeline.attribution.domains import DomainMatcher, Owner
from events_pipeline.ingest.row_builder import COPY_COLUMNS, RejectSink, RowBuilder, copy_text
from tests.unit.ingest.copy_text import unescape_copy_field


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "\\N"),
        ("\\N", "\\\\N"),
        ("a\tb\nc\rd\\e", "a\\tb\\nc\\rd\\\\e"),
        ('quote " , ; 日本 🎉', 'quote " , ; 日本 🎉'),
        ("", ""),
    ],
)
def test_copy_text(value: str | None, text: str) -> None:
    assert copy_text(value) == text


def _builder(domains: dict[str, Owner] | None = None) -> RowBuilder:
    return RowBuilder(
        DomainMatcher(
            domains or {"acme.com": Owner("acme", "standard"), "globex.de": Owner("globex", "gdpr")}
        ),
        file_id=42,
        file_batch_id="file-batch",
        line_id_prefix="bucket/incoming/x.ndjson#etag",
        secret=lambda: "s3cret-s3cret-s3cret-s3cret-s3cret",
        rejects=RejectSink(),
    )


def _rows(data: bytes) -> list[dict[str, str | None]]:
    lines = data.decode().split("\n")
    assert lines[-1] == ""
    rows = []
    for line in lines[:-1]:
        fields = line.split("\t")
        assert len(fields) == len(COPY_COLUMNS)
        rows.append(dict(zip(COPY_COLUMNS, map(unescape_copy_field, fields), strict=True)))
    return rows


def test_good_bad_blank_lines() -> None:
    b = _builder()
    event = {
        "event_type": "pv",
        "timestamp": "2026-11-27T10:00:00Z",
        "site_id": "www.acme.com",
        "user_agent": "tab\there \\N back\\slash",
    }
    lines = [orjson.dumps(event).decode(), "", "not json", '{"event_type": "pv"}', "   "]
    rows = _rows(b.ndjson_block(lines))
    assert len(rows) == 1
    row = rows[0]
    assert row["client_id"] == "acme" and row["privacy_level"] == "standard" and row["file_id"] == "42"
    assert row["user_agent"] == "tab\there \\N back\\slash"
    assert orjson.loads(row["raw_event_data"]) == event
    assert row["raw_event_data"] == lines[0]  # the original text, untouched
    assert row["batch_id"] == "file-batch"
    assert (b.rows, b.rejects.count, b.blank, b.line_no) == (1, 2, 2, 5)
    assert b.per_client == {"acme": 1}
    rejected = [orjson.loads(x) for x in b.rejects.stream().read().splitlines()]
    assert [r["line"] for r in rejected] == [3, 4]
    assert rejected[0]["raw"] == "not json" and "not valid JSON" in rejected[0]["reason"]
    assert "timestamp is missing" in rejected[1]["reason"]
    assert list(b.copy_line_to_source) == [0, 1]


def test_gdpr_row_has_no_raw_ip() -> None:
    b = _builder()
    event = {
        "event_type": "pv",
        "timestamp": "2026-11-27T10:00:00Z",
        "site_id": "globex.de",
        "ip_address": "203.0.113.77",
    }
    (row,) = _rows(b.ndjson_block([orjson.dumps(event).decode()]))
    assert row["ip_address"] == "203.0.113.0"
    assert row["privacy_level"] == "gdpr"
    assert "203.0.113.77" not in "\t".join(v or "" for v in row.values())
    assert orjson.loads(row["raw_event_data"])["ip_pseudonym"]


def test_unattributed_and_event_batch_id() -> None:
    b = _builder()
    event = {"event_type": "pv", "timestamp": 0, "site_id": "nobody.org", "batch_id": "b-1"}
    (row,) = _rows(b.ndjson_block([orjson.dumps(event).decode()]))
    assert row["client_id"] is None and row["batch_id"] == "b-1"
    assert b.per_client == {"": 1} and b.batch_ids == {"b-1"} and b.rows_with_batch == 1


def test_nul_is_replaced_and_counted() -> None:
    b = _builder()
    line = '{"event_type":"pv","timestamp":0,"session_id":"a\\u0000b","x":{"k\\u0000":"\\u0000"}}'
    (row,) = _rows(b.ndjson_block([line]))
    assert row["session_id"] == "a\ufffdb"
    assert orjson.loads(row["raw_event_data"]) == {
        "event_type": "pv",
        "timestamp": 0,
        "session_id": "a\ufffdb",
        "x": {"k\ufffd": "\ufffd"},
    }
    assert b.nul_lines == 1


def test_skip_lines_are_rejected_without_parsing() -> None:
    b = _builder()
    b.skip_lines = {1: "refused by PostgreSQL: boom"}
    assert b.ndjson_block(['{"event_type":"pv","timestamp":0}']) == b""
    assert b.rejects.count == 1


def test_parquet_records() -> None:
    from datetime import UTC, datetime

    b = _builder()
    data = b.record_block(
        [{"event_type": "pv", "timestamp": datetime(2026, 1, 1, tzinfo=UTC), "site_id": "acme.com"}]
    )
    (row,) = _rows(data)
    assert row["timestamp"] == "2026-01-01T00:00:00+00:00"
    assert orjson.loads(row["raw_event_data"])["timestamp"] == "2026-01-01T00:00:00+00:00"
