"""events_client_check without services: form fields, suggestions, planned keys, log lines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events_pipeline.common.intervals import HourInterval
from events_pipeline.common.run_params import ParamError
from events_pipeline.export.client_check import (
    Finding,
    check_object_key,
    form_client_id,
    form_write_test_object,
    next_export_keys,
    planned_parts,
    unknown_client_error,
    utc_text,
)
from events_pipeline.export.formats import ExportOptions
from events_pipeline.export.keys import PART_RE, backup_location, client_location

H = HourInterval(datetime(2026, 12, 31, 23, tzinfo=UTC))


def test_client_id_field_is_required_and_trimmed():
    assert form_client_id({"client_id": " acme "}) == "acme"
    for params in (None, {}, {"client_id": ""}, {"client_id": "  "}, {"client_id": None}):
        with pytest.raises(ParamError, match="form field 'client_id' is required"):
            form_client_id(params)
    with pytest.raises(ParamError, match="form field 'client_id' = 'Acme/x' is not a client id"):
        form_client_id({"client_id": "Acme/x"})


def test_write_test_object_defaults_to_true_and_must_be_a_boolean():
    assert form_write_test_object({}) is True
    assert form_write_test_object({"write_test_object": None}) is True
    assert form_write_test_object({"write_test_object": False}) is False
    with pytest.raises(ParamError, match="form field 'write_test_object'"):
        form_write_test_object({"write_test_object": "no"})


def test_an_unknown_client_names_the_field_and_suggests_close_ids():
    err = unknown_client_error("acmee", ["acme", "globex", "acme-eu"])
    assert str(err).startswith("form field 'client_id' = 'acmee': no such client in clients")
    assert "'acme'" in str(err)
    assert "did you mean" not in str(unknown_client_error("zzz", ["acme"]))


@pytest.mark.parametrize(("pending", "max_rows", "parts"), [(0, 1000, 0), (1, 1000, 1), (2500, 1000, 3)])
def test_planned_parts(pending, max_rows, parts):
    assert planned_parts(pending, max_rows) == parts


def test_next_export_keys_are_the_exports_own_keys():
    opts = ExportOptions("jsonl", "zstd")
    target = client_location("acme", "acme-data", "events/v1", H)
    backup = backup_location("acme", "test-backup", H)
    client_uris, backup_uris = next_export_keys(opts, target, backup, 2)
    assert client_uris == [
        "s3://acme-data/events/v1/dt=2026-12-31/hour=23/part-00000.jsonl.zst",
        "s3://acme-data/events/v1/dt=2026-12-31/hour=23/part-00001.jsonl.zst",
        "s3://acme-data/events/v1/dt=2026-12-31/hour=23/_manifest.json",
    ]
    assert backup_uris == [
        "s3://test-backup/acme/dt=2026-12-31/hour=23/part-00000.jsonl.zst",
        "s3://test-backup/acme/dt=2026-12-31/hour=23/part-00001.jsonl.zst",
        "s3://test-backup/acme/dt=2026-12-31/hour=23/_manifest.json",
    ]
    assert next_export_keys(opts, target, backup, 0) == (
        ["s3://acme-data/events/v1/dt=2026-12-31/hour=23/_manifest.json"],
        ["s3://test-backup/acme/dt=2026-12-31/hour=23/_manifest.json"],
    )


def test_the_test_object_stays_out_of_every_hour_folder_and_is_no_part():
    key = check_object_key("events/v1", datetime(2026, 12, 31, 23, 5, 1, 42, tzinfo=UTC))
    assert key == "events/v1/_events_client_check/20261231T230501000042Z.json"
    assert "dt=" not in key and not PART_RE.fullmatch(key.rsplit("/", 1)[1])


def test_a_finding_is_one_line():
    line = Finding("test_object", "fail", "PutObject s3://b/k denied").line("acme")
    assert line == "client_check client=acme check=test_object status=fail: PutObject s3://b/k denied"
    assert "\n" not in line


def test_times_are_reported_in_utc_whatever_the_sessions_zone():
    from zoneinfo import ZoneInfo

    berlin = datetime(2026, 12, 31, 23, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert utc_text(berlin) == "2026-12-31T22:30:00Z"
