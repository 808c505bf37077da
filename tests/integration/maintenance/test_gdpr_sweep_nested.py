"""The GDPR sweep finds and treats every raw IP of raw_event_data, nested ones too (contract §6.3).

Its candidate query (include/sql/maintenance/gdpr_sweep_candidates.sql) must select a
row whose only raw IP sits deep in raw_event_data - nested, in an array, escaped, IPv6
or an IPv6 form embedding an IPv4 address - and must NOT select a row that is treated
already (so a sweep of treated rows rewrites nothing). The treatment edits the stored
text: numbers and every other byte stay.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events_pipeline.privacy.sweep import run_gdpr_sweep

from .conftest import add_client, event, insert_events

SECRET = "test-ip-hash-secret-of-at-least-32-bytes"

#: raw_event_data texts whose only raw IP is nested (the top-level ip_address is treated already).
NESTED = {
    "object": '{"ip_address":"203.0.113.0","ctx":{"ip":"203.0.113.78"},"n":18446744073709551616}',
    "array": '{"a":[1,["x","198.51.100.7"]],"f":1.0000000000000000001}',
    "escaped": '{"c":{"ip":"203\\u002e0.113.78"}}',
    "all_escaped": '{"c":{"ip":"\\u0032\\u0030\\u0033.0.113.78"}}',
    "ipv6": '{"v6":"2001:db8:1:2::5"}',
    "mapped": '{"v":"::ffff:203.0.113.78"}',
    "sixtofour": '{"v":"2002:cb00:714e::"}',
    "spaced": '{"v":" 203.0.113.78 "}',
}
#: Texts that hold no raw IP: never candidates.
TREATED = {
    "truncated": '{"ip_address":"203.0.113.0","ctx":{"ip":"198.51.100.0","v6":"2001:db8:1::"}}',
    "not_addresses": '{"url":"http://203.0.113.78/x","t":"10:30:00","v":"1.2.3","k":{"203.0.113.78":1}}',
    "not_strict": '{"zeros":"010.001.002.003","mask":"203.0.113.78/32","zone":"fe80::1%eth0"}',
}


@pytest.fixture
def gdpr_client(maint_db, partitions_back):
    add_client(maint_db, "acme", privacy_level="gdpr")
    return maint_db


def _row(name: str, text: str) -> dict:
    row = event(
        datetime.now(UTC) - timedelta(days=1), ip="203.0.113.0", privacy_level="gdpr", visitor_id=name
    )
    row["raw_event_data"] = text
    return row


def test_the_sweep_treats_raw_ips_wherever_they_are_in_raw_event_data(gdpr_client):
    db = gdpr_client
    insert_events(db, [_row(name, text) for name, text in {**NESTED, **TREATED}.items()])

    assert run_gdpr_sweep(db, SECRET) == {"acme": len(NESTED)}

    stored = dict(db.execute("SELECT visitor_id, raw_event_data::text FROM events_log").fetchall())
    for name in NESTED:
        text = stored[name]
        for leaked in ("203.0.113.78", "198.51.100.7", "2001:db8:1:2::5", "u002e", "u0032", "cb00:714e"):
            assert leaked not in text, (name, text)
    assert (
        stored["object"] == '{"ip_address":"203.0.113.0","ctx":{"ip":"203.0.113.0"},"n":18446744073709551616}'
    )
    assert stored["array"] == '{"a":[1,["x","198.51.100.0"]],"f":1.0000000000000000001}'
    assert stored["mapped"] == stored["sixtofour"] == '{"v":"203.0.113.0"}'
    assert stored["ipv6"] == '{"v6":"2001:db8:1::"}'
    for name, text in TREATED.items():
        assert stored[name] == text  # not touched

    assert run_gdpr_sweep(db, SECRET) == {"acme": 0}  # nothing left to do


def test_the_candidate_query_selects_exactly_the_rows_holding_a_raw_ip(gdpr_client):
    from events_pipeline.common.db import load_sql

    db = gdpr_client
    insert_events(db, [_row(name, text) for name, text in {**NESTED, **TREATED}.items()])
    with db.transaction():
        ids = [
            row[0]
            for row in db.execute(
                load_sql("maintenance/gdpr_sweep_candidates.sql").replace("{partition}", "events_log"),
                {"client_ids": ["acme"], "since": ["-infinity"], "after_id": 0, "batch": 100},
            )
        ]
    found = db.execute("SELECT visitor_id FROM events_log WHERE id = ANY(%s)", (ids,)).fetchall()
    assert sorted(v for (v,) in found) == sorted(NESTED)
