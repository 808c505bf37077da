"""Re-attribution and the SQL domain rule (edge cases shared with ingest's Python rule)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from events_pipeline.maintenance.reattribution import match_sites, run_reattribution

from .conftest import add_client, count, event, insert_events

SECRET = "test-ip-hash-secret-of-at-least-32-bytes"

#: (site_id, expected client) - the same table must hold for ingest's Python rule.
DOMAIN_CASES = [
    ("acme.com", "acme"),  # exact
    ("shop.acme.com", "acme"),  # sub-domain -> parent
    ("a.b.shop.acme.com", "acme"),  # deep sub-domain
    ("eu.shop.acme.com", "acme-eu"),  # nearest listed parent wins
    ("shop.acme.com:8080", "acme"),  # port dropped
    ("ACME.COM", "acme"),  # case
    ("Shop.Acme.Com.", "acme"),  # trailing dot
    ("acme.com.:443", "acme"),  # trailing dot and port
    (" acme.com ", "acme"),  # surrounding blanks
    ("acme.com\t", "acme"),  # surrounding whitespace
    ("v.acme-eu.tv", "tv-client"),  # no letter trimmed off the ends
    ("Shop.Acme.COM:8443.", "acme"),  # port then trailing dot
    ("https://Shop.Acme.com/cart?x=1", "acme"),  # a URL given as site_id
    ("user@acme.com", "acme"),  # user-info
    ("[2001:db8::1]:80", None),  # IPv6 literal
    ("acme.com:abc", "acme"),  # anything after a single colon is a port
    ("notacme.com", None),  # suffix of a label is not a parent
    ("acme.com.evil.org", None),  # unknown
    ("com", None),  # bare TLD
    ("", None),
    (".", None),
]


@pytest.fixture
def domains(maint_db):
    add_client(maint_db, "acme", domains=["acme.com"])
    add_client(maint_db, "acme-eu", domains=["eu.shop.acme.com"])
    add_client(maint_db, "tv-client", domains=["v.acme-eu.tv"])
    return maint_db


def test_domain_rule_edge_cases(domains):
    """All cases in one query (the production SQL), compared case by case."""
    got = match_sites(domains, [site for site, _ in DOMAIN_CASES])
    wrong = [(s, e, got.get(s, (None,))[0]) for s, e in DOMAIN_CASES if got.get(s, (None,))[0] != e]
    assert wrong == []


def test_reattribution_then_export_ready(maint_db, partitions_back, run_dag, s3):
    # (s3: the DAG's landing-expiry step needs the landing bucket to exist)
    db = maint_db
    add_client(db, "acme")
    add_client(db, "globex", privacy_level="gdpr")
    t = datetime.now(UTC) - timedelta(hours=5)
    insert_events(
        db,
        [
            event(t, client_id=None, site_id="shop.acme.com", visitor_id="a"),
            event(t, client_id=None, site_id="Globex.DE:443", visitor_id="g", ip="198.51.100.23"),
            event(t, client_id=None, site_id="unknown.org", visitor_id="u"),
            event(t, client_id=None, site_id="shop.acme.com", visitor_id="old", status="archived"),
        ],
    )
    # The mappings appear after the rows were loaded.
    db.execute("INSERT INTO client_domains VALUES ('acme.com', 'acme'), ('globex.de', 'globex')")

    dr = run_dag("events_maintenance", logical_date=datetime.now(UTC))
    assert dr.state == "success"

    rows = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT visitor_id, client_id, export_status, export_hour, privacy_level, host(ip_address), "
            "raw_event_data FROM events_log"
        )
    }
    # Attributed, still pending and unclaimed: what the next hourly export picks up.
    assert rows["a"][:4] == ("acme", "pending", None, "standard")
    assert rows["g"][:4] == ("globex", "pending", None, "gdpr")
    assert rows["g"][4] == "198.51.100.0"
    assert rows["g"][5]["ip_address"] == "198.51.100.0" and "ip_pseudonym" in rows["g"][5]
    assert rows["u"][0] is None
    assert rows["old"][0] is None  # archived rows are not re-attributed
    assert count(db, "export_hour IS NULL AND client_id IS NOT NULL AND export_status = 'pending'") == 2
    logged = dict(
        db.execute("SELECT client_id, rows_affected FROM maintenance_log WHERE step = 'reattribution'")
    )
    assert logged == {"acme": 1, "globex": 1}

    # Re-run: nothing changes.
    assert run_reattribution(db, SECRET) == {}
    assert json.dumps(rows["g"][5], sort_keys=True) == json.dumps(
        db.execute("SELECT raw_event_data FROM events_log WHERE visitor_id = 'g'").fetchone()[0],
        sort_keys=True,
    )


def test_reattribution_to_a_gdpr_client_treats_every_ip_of_the_event(maint_db, partitions_back):
    """Contract §6.3: the nested copies too, as an edit of the stored text (numbers kept)."""
    db = maint_db
    add_client(db, "globex", privacy_level="gdpr", domains=["globex.de"])
    row = event(
        datetime.now(UTC) - timedelta(hours=2), client_id=None, site_id="globex.de", ip="203.0.113.78"
    )
    row["raw_event_data"] = (
        '{"ip_address":"203.0.113.78","ctx":{"ip":"203.0.113.78","all":["198.51.100.7","203\\u002e0.113.78"]},'
        '"n":18446744073709551616}'
    )
    insert_events(db, [row])

    assert run_reattribution(db, SECRET) == {"globex": 1}

    ip, text, level = db.execute(
        "SELECT host(ip_address), raw_event_data::text, privacy_level FROM events_log"
    ).fetchone()
    assert (ip, level) == ("203.0.113.0", "gdpr")
    assert text.startswith(
        '{"ip_address":"203.0.113.0","ctx":{"ip":"203.0.113.0","all":["198.51.100.0","203.0.113.0"]},'
        '"n":18446744073709551616,"ip_pseudonym":"'
    )


RAW_IP = "198.51.100.23"


def _raw_ip_rows(db) -> int:
    return db.execute(
        "SELECT count(*) FROM events_log WHERE host(ip_address) = %s OR raw_event_data::text LIKE %s",
        (RAW_IP, f"%{RAW_IP}%"),
    ).fetchone()[0]


def _old_unattributed_row(db) -> None:
    add_client(db, "acme", domains=["acme.com"])  # standard when the step starts
    t = datetime.now(UTC) - timedelta(days=10)  # old created_at: below any later watermark
    insert_events(db, [event(t, client_id=None, site_id="shop.acme.com", visitor_id="late", ip=RAW_IP)])


def test_a_batch_with_a_stale_standard_level_leaves_a_switched_clients_rows_alone(maint_db, partitions_back):
    """The race: level read as standard, client switched, sweep's full pass, then the batch."""
    from events_pipeline.maintenance.reattribution import attribute_standard
    from events_pipeline.privacy.sweep import sweep_gdpr

    db = maint_db
    _old_unattributed_row(db)
    stale = {s: c for s, (c, p) in match_sites(db, ["shop.acme.com"]).items() if p == "standard"}
    assert stale == {"shop.acme.com": "acme"}
    db.execute("UPDATE clients SET privacy_level = 'gdpr' WHERE client_id = 'acme'")
    assert sweep_gdpr(db, SECRET).full_pass == {"acme": "never swept"}

    assert attribute_standard(db, stale, 100) == {}  # the batch re-checks the level: nothing taken
    assert db.execute("SELECT client_id, privacy_level FROM events_log").fetchone() == (None, "standard")

    # The next run gives the row its client with the gdpr treatment; no raw IP left anywhere.
    assert run_reattribution(db, SECRET) == {"acme": 1}
    assert db.execute("SELECT client_id, privacy_level, host(ip_address) FROM events_log").fetchone() == (
        "acme",
        "gdpr",
        "198.51.100.0",
    )
    assert sweep_gdpr(db, SECRET).per_client == {"acme": 0}
    assert _raw_ip_rows(db) == 0


def test_a_switch_during_the_step_sends_the_rows_down_the_gdpr_path(maint_db, partitions_back, monkeypatch):
    """Switched after match_sites read 'standard', before the first batch: treated in the same run."""
    from events_pipeline.maintenance import reattribution

    db = maint_db
    _old_unattributed_row(db)
    original = reattribution.delete_erased

    def switch_then_delete(conn, matched):
        assert matched == {"shop.acme.com": ("acme", "standard")}
        db.execute("UPDATE clients SET privacy_level = 'gdpr' WHERE client_id = 'acme'")
        return original(conn, matched)

    monkeypatch.setattr(reattribution, "delete_erased", switch_then_delete)
    assert run_reattribution(db, SECRET) == {"acme": 1}
    assert db.execute("SELECT privacy_level, host(ip_address) FROM events_log").fetchone() == (
        "gdpr",
        "198.51.100.0",
    )
    assert _raw_ip_rows(db) == 0


def test_a_switch_in_flight_waits_for_the_batch_or_is_seen_by_it(maint_db, partitions_back, migrated_db):
    """The batch locks the client row FOR SHARE: an uncommitted switch makes it wait, then skip."""
    import threading
    import time

    import psycopg

    from events_pipeline.maintenance.reattribution import attribute_standard

    db = maint_db
    _old_unattributed_row(db)
    switch = psycopg.connect(migrated_db.dsn("events"))
    switch.execute("UPDATE clients SET privacy_level = 'gdpr' WHERE client_id = 'acme'")  # not committed
    result = {}

    def batch() -> None:
        with psycopg.connect(migrated_db.dsn("events"), autocommit=True) as conn:
            result["n"] = attribute_standard(conn, {"shop.acme.com": "acme"}, 100)

    worker = threading.Thread(target=batch)
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive()  # waiting for the client row
    switch.commit()
    switch.close()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert result["n"] == {}
    assert db.execute("SELECT client_id FROM events_log").fetchone() == (None,)
