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


def test_only_partitions_that_can_hold_rows_newer_than_a_clients_last_sweep_are_read():
    from datetime import UTC, date, datetime

    from events_pipeline.privacy.sweep import ClientPlan, partitions_to_read

    parts = {date(2026, 11, d): f"events_log_p202611{d:02d}" for d in (1, 2, 3, 4)}
    since = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)
    current = ClientPlan("acme", 1, since, "since ...")
    assert [name for name, _ in partitions_to_read(parts, [current])] == [
        "events_log_p20261103",
        "events_log_p20261104",
        "events_log_default",
    ]
    switched = ClientPlan("globex", 2, None, "privacy level changed")
    read = partitions_to_read(parts, [current, switched])
    assert [(name, [p.client_id for p in wanted]) for name, wanted in read] == [
        ("events_log_p20261101", ["globex"]),
        ("events_log_p20261102", ["globex"]),
        ("events_log_p20261103", ["acme", "globex"]),
        ("events_log_p20261104", ["acme", "globex"]),
        ("events_log_default", ["acme", "globex"]),
    ]
    assert partitions_to_read(parts, []) == []


def test_watermark_is_the_oldest_open_transaction_when_every_session_is_visible(caplog):
    from events_pipeline.privacy.sweep import decide_watermark

    with caplog.at_level("WARNING", logger="events_pipeline.privacy.sweep"):
        assert decide_watermark(T, 0, "events_sweeper") == T
    assert caplog.records == []


def test_watermark_is_not_advanced_when_sessions_are_hidden_and_the_grant_is_named(caplog):
    """Sessions of other roles hide their xact_start from a role without pg_read_all_stats."""
    from events_pipeline.privacy.sweep import decide_watermark

    with caplog.at_level("WARNING", logger="events_pipeline.privacy.sweep"):
        assert decide_watermark(T, 2, "events_sweeper") is None
    [rec] = caplog.records
    assert rec.levelname == "WARNING"
    assert "GRANT pg_read_all_stats TO events_sweeper" in rec.getMessage()
    assert "not advanced" in rec.getMessage()
