"""The GDPR sweep reads what can be untreated, not the stored history (gdpr_sweep_state).

A second sweep of unchanged data opens no old partition; a client switched to gdpr later
(or switched away and back) still gets its old rows treated by one full pass; a new
treatment rule causes one full pass, recorded so it runs once.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import psycopg

from events_pipeline.common.partitions import partition_name
from events_pipeline.privacy.sweep import RULE_VERSION, sweep_gdpr

from .conftest import add_client, event, insert_events

SECRET = "test-ip-hash-secret-of-at-least-32-bytes"


def _treated(created_at: datetime, client_id: str, visitor_id: str) -> dict:
    """A row as ingest stores it for a gdpr client (nothing for the sweep to do)."""
    return event(
        created_at, client_id=client_id, ip="203.0.113.0", privacy_level="gdpr", visitor_id=visitor_id
    )


def _raw(created_at: datetime, client_id: str, visitor_id: str, level: str = "standard") -> dict:
    return event(
        created_at, client_id=client_id, ip="198.51.100.9", privacy_level=level, visitor_id=visitor_id
    )


def _ip(db, visitor_id: str) -> str:
    return db.execute(
        "SELECT host(ip_address) FROM events_log WHERE visitor_id = %s", (visitor_id,)
    ).fetchone()[0]


def _old_partitions_read(result, today) -> list[str]:
    """Daily partitions before today that the sweep read."""
    return [
        name for name in result.partitions if name.startswith("events_log_p") and name < partition_name(today)
    ]


def test_a_second_sweep_of_unchanged_data_reads_no_old_partition(maint_db, partitions_back, caplog):
    db, today = maint_db, partitions_back
    add_client(db, "acme", privacy_level="gdpr")
    now = datetime.now(UTC)
    insert_events(
        db,
        [
            _treated(now - timedelta(days=20), "acme", "old"),
            _raw(now - timedelta(days=5), "acme", "leaked", level="gdpr"),
            _treated(now - timedelta(days=1), "acme", "yesterday"),
        ],
    )

    first = sweep_gdpr(db, SECRET)
    assert first.per_client == {"acme": 1}
    assert first.full_pass == {"acme": "never swept"}
    assert partition_name((now - timedelta(days=20)).date()) in first.partitions
    assert _ip(db, "leaked") == "198.51.100.0"

    # A row stored after the first sweep is read (and treated) by the second one.
    insert_events(db, [_raw(datetime.now(UTC), "acme", "fresh", level="gdpr")])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="events_pipeline.privacy.sweep"):
        second = sweep_gdpr(db, SECRET)
    assert second.full_pass == {}
    assert second.per_client == {"acme": 1}
    assert _ip(db, "fresh") == "198.51.100.0"
    assert _old_partitions_read(second, today) == []
    # What the log tells on-call: one line per partition read, none for the old days.
    logged = [
        r.getMessage().split()[3].rstrip(":")
        for r in caplog.records
        if r.getMessage().startswith("gdpr sweep: partition ")
    ]
    assert logged == list(second.partitions)
    assert partition_name(today) in logged and "events_log_default" in logged
    assert all(name >= partition_name(today) for name in logged if name.startswith("events_log_p")), logged
    assert any(
        "1 row(s) anonymised" in r.getMessage() and "client acme" in r.getMessage() for r in caplog.records
    )

    # And a third one, with nothing new, treats nothing and still opens no old partition.
    third = sweep_gdpr(db, SECRET)
    assert third.per_client == {"acme": 0}
    assert _old_partitions_read(third, today) == []


def test_a_client_switched_to_gdpr_later_gets_its_old_rows_treated(maint_db, partitions_back):
    db, today = maint_db, partitions_back
    add_client(db, "acme", privacy_level="gdpr")
    add_client(db, "globex")
    now = datetime.now(UTC)
    insert_events(
        db,
        [
            _treated(now - timedelta(days=25), "acme", "a-old"),
            _raw(now - timedelta(days=30), "globex", "g-old"),
            _raw(now - timedelta(days=3), "globex", "g-recent"),
        ],
    )
    sweep_gdpr(db, SECRET)
    assert _old_partitions_read(sweep_gdpr(db, SECRET), today) == []  # acme is up to date
    assert _ip(db, "g-old") == "198.51.100.9"  # globex is standard: untouched

    db.execute("UPDATE clients SET privacy_level = 'gdpr' WHERE client_id = 'globex'")
    result = sweep_gdpr(db, SECRET)

    assert set(result.full_pass) == {"globex"}
    assert result.per_client == {"acme": 0, "globex": 2}
    assert _ip(db, "g-old") == "198.51.100.0" and _ip(db, "g-recent") == "198.51.100.0"
    raw = db.execute(
        "SELECT raw_event_data, privacy_level FROM events_log WHERE visitor_id = 'g-old'"
    ).fetchone()
    assert raw[0]["ip_address"] == "198.51.100.0" and "ip_pseudonym" in raw[0] and raw[1] == "gdpr"
    old = partition_name((now - timedelta(days=30)).date())
    assert result.partitions[old] == 1
    # The full pass is recorded: the next sweep is incremental again.
    assert _old_partitions_read(sweep_gdpr(db, SECRET), today) == []


def test_a_switch_away_and_back_between_two_sweeps_means_a_full_pass(maint_db, partitions_back):
    """Rows attributed while the client was standard can be old: the switch alone decides."""
    db = maint_db
    add_client(db, "acme", privacy_level="gdpr")
    sweep_gdpr(db, SECRET)
    db.execute("UPDATE clients SET privacy_level = 'standard' WHERE client_id = 'acme'")
    # e.g. an old unattributed row given to acme by re-attribution while it was standard
    insert_events(db, [_raw(datetime.now(UTC) - timedelta(days=12), "acme", "late")])
    db.execute("UPDATE clients SET privacy_level = 'gdpr' WHERE client_id = 'acme'")

    result = sweep_gdpr(db, SECRET)

    assert result.full_pass == {"acme": "privacy level changed"}
    assert result.per_client == {"acme": 1}
    assert _ip(db, "late") == "198.51.100.0"


def test_a_new_treatment_rule_means_one_recorded_full_pass(maint_db, partitions_back):
    db, today = maint_db, partitions_back
    add_client(db, "acme", privacy_level="gdpr")
    leaky = _treated(datetime.now(UTC) - timedelta(days=9), "acme", "nested")
    leaky["raw_event_data"] = json.dumps({"ip_address": "203.0.113.0", "ctx": {"ip": "203.0.113.78"}})
    sweep_gdpr(db, SECRET)
    # Stored after the sweep but with an old created_at, as if the rule had missed it.
    insert_events(db, [leaky])
    assert sweep_gdpr(db, SECRET).per_client == {"acme": 0}  # incremental: not read

    result = sweep_gdpr(db, SECRET, rule_version=RULE_VERSION + 1)
    assert result.full_pass == {"acme": f"rule version {RULE_VERSION} -> {RULE_VERSION + 1}"}
    assert result.per_client == {"acme": 1}
    stored = db.execute("SELECT raw_event_data FROM events_log WHERE visitor_id = 'nested'").fetchone()[0]
    assert stored["ctx"]["ip"] == "203.0.113.0"
    again = sweep_gdpr(db, SECRET, rule_version=RULE_VERSION + 1)
    assert again.full_pass == {} and _old_partitions_read(again, today) == []
    full_at = db.execute("SELECT full_pass_at, rule_version FROM gdpr_sweep_state WHERE client_id = 'acme'")
    assert full_at.fetchone()[1] == RULE_VERSION + 1


def test_the_watermark_waits_for_transactions_still_open(maint_db, partitions_back):
    """A load that started before the sweep commits rows with an earlier created_at: read next time."""
    db = maint_db
    add_client(db, "acme", privacy_level="gdpr")
    with psycopg.connect(db.info.dsn) as other:
        started = other.execute("SELECT now()").fetchone()[0]  # opens a transaction
        result = sweep_gdpr(db, SECRET)
        other.rollback()
    assert result.swept_from <= started


NOSTATS_ROLE = "gdpr_sweep_nostats"


def test_the_watermark_is_not_advanced_past_sessions_the_role_cannot_see(maint_db, caplog):
    """Without pg_read_all_stats another role's open transaction shows xact_start NULL: not ignored."""
    from events_pipeline.privacy.sweep import take_watermark

    db = maint_db
    db.execute(f"DROP ROLE IF EXISTS {NOSTATS_ROLE}")
    db.execute(f"CREATE ROLE {NOSTATS_ROLE} NOLOGIN")
    try:
        with psycopg.connect(db.info.dsn) as other, psycopg.connect(db.info.dsn) as sweeper:
            started = other.execute("SELECT now()").fetchone()[0]  # a superuser's transaction stays open
            sweeper.autocommit = True
            sweeper.execute(f"SET ROLE {NOSTATS_ROLE}")
            with caplog.at_level("WARNING", logger="events_pipeline.privacy.sweep"):
                assert take_watermark(sweeper) is None
            assert f"GRANT pg_read_all_stats TO {NOSTATS_ROLE}" in caplog.text
            # With the grant the transaction is visible: the watermark waits for it.
            db.execute(f"GRANT pg_read_all_stats TO {NOSTATS_ROLE}")
            caplog.clear()
            with caplog.at_level("WARNING", logger="events_pipeline.privacy.sweep"):
                assert take_watermark(sweeper) <= started
            assert caplog.text == ""
            sweeper.execute("RESET ROLE")
            other.rollback()
    finally:
        db.execute(f"DROP ROLE IF EXISTS {NOSTATS_ROLE}")


def test_a_sweep_with_hidden_sessions_keeps_each_clients_previous_watermark(
    maint_db, partitions_back, monkeypatch
):
    from events_pipeline.privacy import sweep

    db = maint_db
    add_client(db, "acme", privacy_level="gdpr")
    first = sweep_gdpr(db, SECRET)
    assert first.swept_from is not None
    add_client(db, "globex", privacy_level="gdpr")
    monkeypatch.setattr(sweep, "take_watermark", lambda conn: sweep.decide_watermark(None, 1, "r"))
    second = sweep_gdpr(db, SECRET)
    assert second.swept_from is None and second.full_pass == {"globex": "never swept"}
    state = dict(db.execute("SELECT client_id, swept_from FROM gdpr_sweep_state"))
    assert state["acme"] == first.swept_from  # not advanced
    assert state.get("globex") is None  # no watermark yet: the next sweep makes its full pass again
    monkeypatch.undo()
    third = sweep_gdpr(db, SECRET)
    assert third.full_pass == {"globex": "never swept"}
    assert dict(db.execute("SELECT client_id, swept_from FROM gdpr_sweep_state"))["acme"] == third.swept_from
