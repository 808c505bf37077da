"""GDPR sweep: rows that predate a client's switch get exactly the ingest treatment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from events_pipeline.privacy.ip_treatment import ip_pseudonym, protect_event
from events_pipeline.privacy.sweep import run_gdpr_sweep

from .conftest import add_client, event, insert_events

SECRET = "test-ip-hash-secret-of-at-least-32-bytes"


def test_sweep_after_switch_to_gdpr(maint_db, partitions_back, run_dag, s3):
    # (s3: the DAG's landing-expiry step needs the landing bucket to exist)
    db = maint_db
    add_client(db, "acme")
    add_client(db, "initech")
    t = datetime.now(UTC) - timedelta(days=2)
    rows = [
        event(t, client_id="acme", ip="203.0.113.77", visitor_id="a"),
        event(t, client_id="acme", ip="2001:db8:1:2::5", visitor_id="b", status="exported"),
        event(t, client_id="acme", ip=None, visitor_id="c"),
        event(t, client_id="initech", ip="198.51.100.9", visitor_id="d"),
    ]
    # A row stored with a treated column but a raw IP left in raw_event_data.
    leaky = event(t, client_id="acme", ip="192.0.2.0", visitor_id="e")
    leaky["raw_event_data"] = json.dumps({"ip_address": "192.0.2.55", "visitor_id": "e"})
    insert_events(db, [*rows, leaky])
    db.execute("UPDATE clients SET privacy_level = 'gdpr' WHERE client_id = 'acme'")

    dr = run_dag("events_maintenance", logical_date=datetime.now(UTC))
    assert dr.state == "success"

    got = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT visitor_id, host(ip_address), raw_event_data, privacy_level FROM events_log ORDER BY 1"
        )
    }
    for vid, raw_ip in (("a", "203.0.113.77"), ("b", "2001:db8:1:2::5")):
        expected_raw, expected_ip = protect_event(
            json.loads(rows["ab".index(vid)]["raw_event_data"]), raw_ip, SECRET
        )
        assert got[vid][0] == expected_ip
        assert got[vid][1] == expected_raw
        assert got[vid][1]["ip_pseudonym"] == ip_pseudonym(raw_ip, SECRET)
        assert got[vid][2] == "gdpr"
    assert got["a"][0] == "203.0.113.0" and got["b"][0] == "2001:db8:1::"
    assert got["c"][0] is None and got["c"][2] == "gdpr"
    assert got["e"][1]["ip_address"] == "192.0.2.0"
    # A standard client is untouched.
    assert got["d"][0] == "198.51.100.9" and got["d"][2] == "standard"

    # Idempotent: a second sweep finds nothing.
    assert run_gdpr_sweep(db, SECRET) == {"acme": 0}
