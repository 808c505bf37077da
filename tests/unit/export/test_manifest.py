"""_manifest.json: content, round trip, validation, key resolution."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from events_pipeline.common.intervals import HourInterval
from events_pipeline.export.formats import ExportOptions
from events_pipeline.export.manifest import (
    CONTENT_TYPE,
    ExportedFile,
    ManifestError,
    build_manifest,
    dump_manifest,
    file_entries,
    manifest_bytes,
    read_manifest,
    resolve_key,
    update_file_entry,
)

H = HourInterval(datetime(2026, 12, 31, 23, tzinfo=UTC))
SHA = "ab" * 32
FILES = [ExportedFile("part-00000.parquet", 10, 1000, SHA), ExportedFile("part-00001.parquet", 5, 600, SHA)]


def test_build_manifest_has_the_agreed_fields():
    m = build_manifest("acme", H, FILES, generated_at=datetime(2027, 1, 1, 0, 5, 1, 250000, tzinfo=UTC))
    assert m == {
        "format_version": 1,
        "client_id": "acme",
        "interval_start": "2026-12-31T23:00:00Z",
        "interval_end": "2027-01-01T00:00:00Z",
        # the export options of a client that sets none (contract §5.2)
        "format": "parquet",
        "compression": "zstd",
        "encryption": {"sse": "none"},
        "row_count": 15,
        "files": [
            {"key": "part-00000.parquet", "rows": 10, "bytes": 1000, "sha256": SHA},
            {"key": "part-00001.parquet", "rows": 5, "bytes": 600, "sha256": SHA},
        ],
        "generated_at": "2027-01-01T00:05:01.250000Z",
    }


def test_round_trip_and_empty_hour():
    m = build_manifest("acme", H, [])
    assert m["row_count"] == 0 and m["files"] == []
    assert read_manifest(dump_manifest(m)) == m
    full = build_manifest("acme", H, [f.as_dict() for f in FILES])
    assert read_manifest(dump_manifest(full)) == full


def test_an_edited_manifest_validates_again():
    """What the GDPR erasure rewrite does: drop rows from a file, fix counts and checksum."""
    m = read_manifest(dump_manifest(build_manifest("acme", H, FILES)))
    m["files"][0].update(rows=8, bytes=900, sha256="cd" * 32)
    m["row_count"] = 13
    assert read_manifest(dump_manifest(m))["row_count"] == 13


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.pop("files"), "misses"),
        (lambda m: m.update(format_version=2), "format_version"),
        (lambda m: m.update(row_count=99), "row_count"),
        (lambda m: m["files"][0].update(key="../other/part-00000.parquet"), "relative"),
        (lambda m: m["files"][0].update(key="acme/dt=x/part.parquet"), "relative"),
        (lambda m: m["files"][0].update(sha256="XYZ"), "sha256"),
        (lambda m: m["files"][0].update(rows=-1), "rows"),
        (lambda m: m.update(interval_start="yesterday"), "interval_start"),
        (lambda m: m.update(interval_end="2026-12-31T22:00:00Z"), "after"),
        (lambda m: m.update(interval_start="2026-12-31T23:00:00"), "time zone"),
    ],
)
def test_invalid_manifests_name_the_field(mutate, message):
    m = build_manifest("acme", H, FILES)
    mutate(m)
    with pytest.raises(ManifestError, match=message):
        read_manifest(json.dumps(m).encode())


def test_not_json():
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(b"{nope")
    with pytest.raises(ManifestError, match="not a JSON object"):
        read_manifest(b"[]")


@pytest.mark.parametrize(
    ("file_key", "expected"),
    [
        ("part-0.parquet", "acme/dt=2026-11-20/hour=05/part-0.parquet"),
        ("acme/dt=2026-11-20/hour=05/part-0.parquet", "acme/dt=2026-11-20/hour=05/part-0.parquet"),
        ("s3://test-backup/acme/dt=2026-11-20/hour=05/p.parquet", "acme/dt=2026-11-20/hour=05/p.parquet"),
        ("sub/part-0.parquet", "acme/dt=2026-11-20/hour=05/sub/part-0.parquet"),
    ],
)
def test_resolve_key_accepts_relative_absolute_and_uri_keys(file_key, expected):
    assert resolve_key("acme/dt=2026-11-20/hour=05/_manifest.json", file_key) == expected


def test_resolve_key_is_relative_to_the_manifest_folder():
    assert resolve_key("acme/dt=2026-12-31/hour=23/_manifest.json", "part-00000.parquet") == (
        "acme/dt=2026-12-31/hour=23/part-00000.parquet"
    )
    assert resolve_key("_manifest.json", "part-00000.parquet") == "part-00000.parquet"


def test_manifest_bytes_is_the_serialisation_of_dump_manifest():
    m = build_manifest("acme", H, FILES, generated_at=datetime(2027, 1, 1, tzinfo=UTC))
    assert manifest_bytes(m) == dump_manifest(m)
    assert manifest_bytes(m) == (json.dumps(m, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    assert CONTENT_TYPE == "application/json"


def test_manifest_bytes_keeps_what_another_writer_wrote():
    """Older writers: absolute keys, ``+00:00`` times, extra fields; written back as they are."""
    m = {
        "format_version": 1,
        "client_id": "acme",
        "interval_start": "2026-12-31T23:00:00+00:00",
        "files": [{"sha256": SHA, "key": "acme/dt=2026-12-31/hour=23/p.parquet", "rows": 3, "bytes": 9}],
        "row_count": 3,
        "note": "ü",
    }
    with pytest.raises(ManifestError):
        dump_manifest(m)
    body = manifest_bytes(m)
    assert "ü" in body.decode("utf-8") and body.endswith(b"}\n")
    assert json.loads(body) == m and list(json.loads(body)) == list(m)


def test_read_manifest_without_validation_takes_any_object():
    loose = {"files": [{"key": "acme/dt=2026-12-31/hour=23/p.parquet"}]}
    assert read_manifest(json.dumps(loose).encode(), validate=False) == loose
    with pytest.raises(ManifestError, match="misses"):
        read_manifest(json.dumps(loose).encode())
    with pytest.raises(ManifestError, match="not a JSON object"):
        read_manifest(b"[]", validate=False)
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(b"{nope", validate=False)


def test_file_entries_resolve_every_key_form_to_the_same_entries():
    folder = "acme/dt=2026-12-31/hour=23"
    m = {
        "files": [
            {"key": "part-00000.parquet", "rows": 1},
            {"key": f"{folder}/part-00001.parquet", "rows": 2},
            {"key": f"s3://backup/{folder}/part-00002.parquet", "rows": 3},
        ]
    }
    entries = file_entries(m, f"{folder}/_manifest.json")
    assert list(entries) == [f"{folder}/part-0000{i}.parquet" for i in range(3)]
    assert all(entries[k] is e for k, e in zip(entries, m["files"], strict=True))  # the entries, not copies
    assert file_entries({}, f"{folder}/_manifest.json") == {}


def test_update_file_entry_changes_only_rows_bytes_sha256_and_the_total():
    m = read_manifest(dump_manifest(build_manifest("acme", H, FILES)))
    entry = m["files"][0]
    entry["extra"] = "kept"
    new_sha = "cd" * 32
    assert update_file_entry(m, entry, ExportedFile("ignored-name", 8, 900, new_sha)) is True
    assert entry == {"key": "part-00000.parquet", "rows": 8, "bytes": 900, "sha256": new_sha, "extra": "kept"}
    assert m["row_count"] == 13 and m["files"][1]["rows"] == 5
    # an entry that already describes the object is left alone (rows are not compared)
    assert update_file_entry(m, entry, ExportedFile("x", 999, 900, new_sha)) is False
    assert entry["rows"] == 8 and m["row_count"] == 13
    del entry["extra"]
    assert read_manifest(dump_manifest(m))["row_count"] == 13


PARQUET = "application/vnd.apache.parquet"


def test_a_default_manifest_is_the_former_one_plus_the_option_fields():
    """Readers of the former manifests keep working: every former field is unchanged, in order."""
    when = datetime(2027, 1, 1, tzinfo=UTC)
    files = [ExportedFile(f.key, f.rows, f.bytes, f.sha256, content_type=PARQUET) for f in FILES]
    m = build_manifest("acme", H, files, generated_at=when)
    former = {k: v for k, v in m.items() if k not in ("format", "compression", "encryption")}
    former["files"] = [{k: v for k, v in f.items() if k != "content_type"} for f in m["files"]]
    assert former == {
        "format_version": 1,
        "client_id": "acme",
        "interval_start": "2026-12-31T23:00:00Z",
        "interval_end": "2027-01-01T00:00:00Z",
        "row_count": 15,
        "files": [f.as_dict() for f in FILES],
        "generated_at": "2027-01-01T00:00:00Z",
    }
    assert [f["content_type"] for f in m["files"]] == [PARQUET, PARQUET]
    assert read_manifest(dump_manifest(m)) == m


def test_options_and_content_types_are_recorded():
    opts = ExportOptions("jsonl", "gzip", "aws:kms", "arn:aws:kms:eu-west-1:111122223333:key/k-1")
    files = [ExportedFile("part-00000.jsonl.gz", 3, 120, SHA, content_type="application/gzip")]
    m = read_manifest(dump_manifest(build_manifest("acme", H, files, options=opts.manifest_fields())))
    assert (m["format"], m["compression"]) == ("jsonl", "gzip")
    assert m["encryption"] == {"sse": "aws:kms", "kms_key_id": "arn:aws:kms:eu-west-1:111122223333:key/k-1"}
    assert m["files"][0]["content_type"] == "application/gzip"
    aes = build_manifest("acme", H, [], options=ExportOptions(sse="AES256").manifest_fields())
    assert aes["encryption"] == {"sse": "AES256"} and aes["files"] == []


def test_manifests_of_older_writers_without_options_stay_valid():
    m = build_manifest("acme", H, FILES)
    for k in ("format", "compression", "encryption"):
        del m[k]
    assert read_manifest(json.dumps(m).encode()) == m


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.update(format="csv"), "format"),
        (lambda m: m.update(compression="snappy", format="jsonl"), "compression"),
        (lambda m: m.update(encryption="AES256"), "encryption"),
        (lambda m: m.update(encryption={"sse": "aws:kms"}), "kms_key_id"),
        (lambda m: m.update(encryption={"sse": "none", "kms_key_id": "k"}), "only allowed"),
        (lambda m: m["files"][0].update(key="part-00000.jsonl"), "does not end with '.parquet'"),
        (lambda m: m["files"][0].update(content_type="application/gzip"), "content_type"),
        (lambda m: m["files"][0].update(content_type=""), "content_type"),
    ],
)
def test_invalid_option_fields_name_the_field(mutate, message):
    files = [ExportedFile(f.key, f.rows, f.bytes, f.sha256, content_type=PARQUET) for f in FILES]
    m = build_manifest("acme", H, files)
    mutate(m)
    with pytest.raises(ManifestError, match=message):
        read_manifest(json.dumps(m).encode())


def test_build_manifest_refuses_parts_of_another_format():
    with pytest.raises(ManifestError, match=r"\.jsonl\.zst"):
        build_manifest("acme", H, FILES, options=ExportOptions("jsonl", "zstd").manifest_fields())


def test_dict_entries_keep_their_content_type():
    entry = {
        "key": "part-00000.jsonl",
        "rows": 1,
        "bytes": 2,
        "sha256": SHA,
        "content_type": "application/x-ndjson",
    }
    m = build_manifest("acme", H, [entry], options=ExportOptions("jsonl", "none").manifest_fields())
    assert m["files"] == [entry]
