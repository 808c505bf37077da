"""The sweep applies exactly the ingest treatment (privacy.protect_event)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from events_pipeline.privacy.ip_treatment import protect_event
from events_pipeline.privacy.sweep import treat_row

SECRET = "unit-secret-unit-secret-unit-secret"
T = datetime(2026, 11, 20, tzinfo=UTC)


def test_treat_row_equals_ingest_treatment():
    raw = {"ip_address": "203.0.113.77", "visitor_id": "v"}
    _, _, _, ip, raw_json, invalid = treat_row((1, T, "acme", "203.0.113.77", json.dumps(raw)), SECRET)
    expected_raw, expected_ip = protect_event(dict(raw), "203.0.113.77", SECRET)
    assert ip == expected_ip == "203.0.113.0"
    assert json.loads(raw_json) == expected_raw
    assert not invalid


def test_treat_row_is_idempotent():
    once = treat_row((1, T, "acme", "2001:db8:1:2::5", json.dumps({"ip_address": "2001:db8:1:2::5"})), SECRET)
    twice = treat_row((1, T, "acme", once[3], once[4]), SECRET)
    assert twice[3:5] == once[3:5]


def test_treat_row_ip_only_in_raw():
    _, _, _, ip, raw_json, _ = treat_row(
        (1, T, "acme", None, json.dumps({"ip_address": "192.0.2.9"})), SECRET
    )
    assert ip == "192.0.2.0"
    assert json.loads(raw_json)["ip_address"] == "192.0.2.0"


def test_treat_row_invalid_ip_is_removed_not_kept():
    _, _, _, ip, raw_json, invalid = treat_row(
        (1, T, "acme", None, json.dumps({"ip_address": "not-an-ip"})), SECRET
    )
    assert invalid and ip is None
    assert json.loads(raw_json)["ip_address"] is None
