"""_manifest.json: content, round trip, validation, key resolution."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from events_pipeline.common.intervals import HourInterval
from events_pipeline.export.manifest import (
    ExportedFile,
    ManifestError,
    build_manifest,
    dump_manifest,
    read_manifest,
    resolve_key,
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


def test_resolve_key_is_relative_to_the_manifest_folder():
    assert resolve_key("acme/dt=2026-12-31/hour=23/_manifest.json", "part-00000.parquet") == (
        "acme/dt=2026-12-31/hour=23/part-00000.parquet"
    )
    assert resolve_key("_manifest.json", "part-00000.parquet") == "part-00000.parquet"
