"""Per-client export options (validation, names, S3 arguments, manifest fields) and JSON Lines encoding."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pyarrow as pa
import pytest

from events_pipeline.common.errors import SettingError
from events_pipeline.export.formats import (
    COMPRESSIONS,
    DEFAULT_OPTIONS,
    ExportOptions,
    ExportOptionsError,
    JsonLinesWriter,
    compress,
    decompress,
    encode_jsonl,
    file_type_of,
    jsonl_rows,
)
from events_pipeline.export.keys import PART_RE
from events_pipeline.export.parquet_parts import arrow_schema

KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
T0 = datetime(2026, 11, 27, 3, tzinfo=UTC)


def test_defaults_are_todays_parquet_files():
    assert ExportOptions("parquet", "zstd", None, None, None, None) == DEFAULT_OPTIONS
    assert DEFAULT_OPTIONS.part_name(0) == "part-00000.parquet"
    assert DEFAULT_OPTIONS.content_type == "application/vnd.apache.parquet"
    assert DEFAULT_OPTIONS.sse_args() == {}  # no SSE header at all
    assert DEFAULT_OPTIONS.manifest_fields() == {
        "format": "parquet",
        "compression": "zstd",
        "encryption": {"sse": "none"},
    }


@pytest.mark.parametrize(
    ("fmt", "compression", "name", "content_type"),
    [
        ("parquet", "zstd", "part-00007.parquet", "application/vnd.apache.parquet"),
        ("parquet", "gzip", "part-00007.parquet", "application/vnd.apache.parquet"),
        ("parquet", "snappy", "part-00007.parquet", "application/vnd.apache.parquet"),
        ("parquet", "none", "part-00007.parquet", "application/vnd.apache.parquet"),
        ("jsonl", "none", "part-00007.jsonl", "application/x-ndjson"),
        ("jsonl", "gzip", "part-00007.jsonl.gz", "application/gzip"),
        ("jsonl", "zstd", "part-00007.jsonl.zst", "application/zstd"),
    ],
)
def test_every_valid_combination_names_its_files(fmt, compression, name, content_type):
    opts = ExportOptions(fmt, compression).validate("acme")
    assert opts.part_name(7) == name and PART_RE.fullmatch(name)
    assert opts.content_type == content_type
    assert file_type_of(name) == (fmt, None if fmt == "parquet" else compression)
    assert name.replace("00007", "NNNNN") in opts.describe()


def test_the_combinations_are_exactly_the_agreed_ones():
    assert COMPRESSIONS == {"parquet": ("zstd", "gzip", "snappy", "none"), "jsonl": ("gzip", "zstd", "none")}


def test_sse_arguments_and_manifest_encryption():
    aes = ExportOptions(sse="AES256").validate("acme")
    assert aes.sse_args() == {"ServerSideEncryption": "AES256"}
    assert aes.encryption() == {"sse": "AES256"}
    kms = ExportOptions(sse="aws:kms", sse_kms_key_id=KEY_ARN).validate("acme")
    assert kms.sse_args() == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY_ARN}
    assert kms.encryption() == {"sse": "aws:kms", "kms_key_id": KEY_ARN}
    assert "aws:kms key " + KEY_ARN in kms.describe()
    assert ExportOptions(sse="aws:kms", sse_kms_key_id="alias/aws/s3").validate("acme").sse_args()


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ({"export_format": "csv"}, "export_format"),
        ({"export_format": "jsonl", "export_compression": "snappy"}, "export_compression"),
        ({"export_compression": "brotli"}, "export_compression"),
        ({"export_sse": "aws:kms:dsse"}, "export_sse"),
        ({"export_sse": "aws:kms"}, "export_sse_kms_key_id"),
        ({"export_sse": "aws:kms", "export_sse_kms_key_id": "my key"}, "export_sse_kms_key_id"),
        ({"export_sse": "AES256", "export_sse_kms_key_id": KEY_ARN}, "export_sse_kms_key_id"),
        ({"export_sse_kms_key_id": KEY_ARN}, "export_sse_kms_key_id"),
        ({"export_part_max_bytes": 1000}, "export_part_max_bytes"),
        ({"export_part_max_bytes": 6 * 1024**3}, "export_part_max_bytes"),
        ({"export_part_max_rows": 10}, "export_part_max_rows"),
        ({"export_part_max_rows": True}, "export_part_max_rows"),
    ],
)
def test_an_invalid_option_names_the_client_and_the_column(row, column):
    with pytest.raises(ExportOptionsError, match=rf"client 'acme': clients\.{column} = ") as info:
        ExportOptions.from_row("acme", row)
    assert isinstance(info.value, SettingError)  # fails the task at once, no retries


def test_from_client_reads_the_columns_and_defaults_missing_ones():
    client = SimpleNamespace(
        client_id="acme",
        export_format="jsonl",
        export_compression="zstd",
        export_sse="aws:kms",
        export_sse_kms_key_id=KEY_ARN,
        export_part_max_bytes=None,
        export_part_max_rows=5000,
    )
    assert ExportOptions.from_client(client) == ExportOptions("jsonl", "zstd", "aws:kms", KEY_ARN, None, 5000)
    assert ExportOptions.from_client(SimpleNamespace(client_id="old")) == DEFAULT_OPTIONS


def _table(rows: list[dict]) -> pa.Table:
    base = dict.fromkeys(arrow_schema().names)
    full = [
        {
            **base,
            "event_id": "00000000-0000-4000-8000-000000000001",
            "event_type": "pageview",
            "timestamp": T0,
            "raw_event_data": "{}",
            "created_at": T0,
            **r,
        }
        for r in rows
    ]
    return pa.Table.from_pylist(full, schema=arrow_schema())


def test_jsonl_lines_carry_every_field_with_the_parquet_values():
    row = {
        "session_id": None,
        "visitor_id": "",
        "url": 'https://acme.com/a,"b"\nc\u2028',
        "path": "/ü/日本",
        "ip_address": "2001:db8::1",
        "timestamp": T0 + timedelta(microseconds=7),
        "created_at": datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "raw_event_data": (
            '{"k": "v\\"\\\\,\\n", "n": [1, null], "big": 12345678901234567890, "o": {"z": 1, "a": 2}}'
        ),
    }
    data = encode_jsonl(_table([row]))
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    obj = json.loads(data)
    assert list(obj) == arrow_schema().names  # same fields, same order as the Parquet columns
    assert obj["session_id"] is None and obj["visitor_id"] == ""
    assert obj["url"] == row["url"] and obj["path"] == "/ü/日本" and obj["ip_address"] == "2001:db8::1"
    assert obj["timestamp"] == "2026-11-27T03:00:00.000007Z"
    assert obj["created_at"] == "2026-01-31T23:59:59.999999Z"
    assert obj["raw_event_data"] == json.loads(row["raw_event_data"])
    # the stored JSON text is embedded as it is: key order, spacing, number spelling
    assert row["raw_event_data"].encode() in data


def test_raw_json_with_line_breaks_between_tokens_stays_on_one_line():
    pretty = json.dumps({"a": [1, 2], "b": {"c": "x\ny"}}, indent=2).replace("\n", "\r\n")
    data = encode_jsonl(_table([{"raw_event_data": pretty}, {"raw_event_data": "[]"}]))
    lines = data.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["raw_event_data"] == {"a": [1, 2], "b": {"c": "x\ny"}}
    assert json.loads(lines[1])["raw_event_data"] == []


def test_empty_table_encodes_to_nothing():
    assert encode_jsonl(arrow_schema().empty_table()) == b""


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd"])
def test_writer_compress_and_decompress_agree(tmp_path, codec):
    table = _table([{"visitor_id": f"v{i}"} for i in range(50)])
    path = tmp_path / "part"
    writer = JsonLinesWriter(path, codec)
    writer.write_table(table.slice(0, 20), row_group_size=20)
    writer.write_table(table.slice(20))
    writer.close()
    body = path.read_bytes()
    assert decompress(body, codec) == encode_jsonl(table)
    assert jsonl_rows(body, codec) == 50
    assert decompress(compress(encode_jsonl(table), codec), codec) == encode_jsonl(table)
    if codec == "gzip":
        assert body[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, time 0: deterministic
        assert gzip.decompress(body) == encode_jsonl(table)


def test_unknown_names_and_compressions_are_refused():
    with pytest.raises(ValueError, match="not an export part"):
        file_type_of("part-00000.json")
    with pytest.raises(ValueError, match="snappy"):
        compress(b"", "snappy")
