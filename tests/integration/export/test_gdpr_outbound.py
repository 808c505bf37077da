"""A client switched to gdpr never has a raw IP exported after the switch, not even before the sweep.

Rows stored while the client was ``standard`` hold their addresses until the daily
sweep; the export treats them on the way out (privacy package's ``protect_event``) and
stores the treated values (``privacy_level = 'gdpr'``) in the same transaction.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

from events_pipeline.privacy.ip_treatment import ip_pseudonym, is_truncated, truncate_ip
from tests.integration.export.conftest import (
    HOUR,
    add_client,
    folder,
    insert_rows,
    make_rows,
    read_hour,
    run_hour,
    spread,
)

H0, H1 = HOUR, HOUR + timedelta(hours=1)
SECRET = os.environ["AIRFLOW_VAR_EVENTS_IP_HASH_SECRET"]


def _raw_ips(rows) -> set[str]:
    """The addresses a client must no longer receive: every IP of the rows not already a network address."""
    ips = {r["ip_address"] for r in rows if r["ip_address"]}
    ips |= {json.loads(r["raw_event_data"]).get("ip_address") for r in rows} - {None}
    return {ip for ip in ips if not is_truncated(ip)}


def _assert_treated(table, originals: dict[str, dict]) -> None:
    """Every exported row holds the GDPR treatment of its stored original, and no raw address."""
    for row in table.to_pylist():
        original = originals[row["event_id"]]
        raw_ip = json.loads(original["raw_event_data"]).get("ip_address")
        raw = json.loads(row["raw_event_data"])
        if original["ip_address"]:
            assert row["ip_address"] == truncate_ip(original["ip_address"])
        if raw_ip:
            assert raw["ip_address"] == truncate_ip(raw_ip)
            source = original["ip_address"] or raw_ip
            if not is_truncated(source):
                assert raw["ip_pseudonym"] == ip_pseudonym(source, SECRET)


def test_rows_stored_before_the_switch_are_treated_on_the_way_out_and_in_the_table(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "globex", "client-globex", "globex")  # standard while its rows are loaded
    rows = make_rows("globex", spread(H0, 30), seed=11)
    insert_rows(db, rows)
    assert _raw_ips(rows), "the test data must hold raw addresses"
    db.execute("UPDATE clients SET privacy_level = 'gdpr' WHERE client_id = 'globex'")  # the switch

    assert run_hour(run_dag, H0).state == "success"

    originals = {r["event_id"]: r for r in rows}
    for bucket, prefix in (("client-globex", "globex"), ("test-backup", "globex")):
        manifest, table = read_hour(s3, bucket, folder(prefix, H0))
        assert manifest["row_count"] == 30
        _assert_treated(table, originals)
        values = [str(v) for r in table.to_pylist() for v in (r["ip_address"], r["raw_event_data"])]
        text = " " + " ".join(values)
        assert not [ip for ip in _raw_ips(rows) if f'"{ip}"' in text or f" {ip} " in f"{text} "]
    # the stored rows now hold exactly what was exported
    stored = dict(
        db.execute(
            "SELECT event_id::text, raw_event_data::text FROM events_log WHERE client_id = 'globex' "
            "AND privacy_level = 'gdpr'"
        ).fetchall()
    )
    assert len(stored) == 30
    _, table = read_hour(s3, "client-globex", folder("globex", H0))
    assert {r["event_id"]: r["raw_event_data"] for r in table.to_pylist()} == stored

    # a re-run writes the same bytes (the treatment is stored, nothing left to treat)
    first = read_hour(s3, "client-globex", folder("globex", H0))[0]["files"]
    assert run_hour(run_dag, H0).state == "success"
    assert read_hour(s3, "client-globex", folder("globex", H0))[0]["files"] == first


def test_a_published_hour_rewritten_after_the_switch_holds_no_raw_address(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "globex", "client-globex", "globex")
    rows = make_rows("globex", spread(H0, 12), seed=5)
    insert_rows(db, rows)
    assert run_hour(run_dag, H0).state == "success"  # published while standard: raw addresses
    _, before = read_hour(s3, "client-globex", folder("globex", H0))
    assert {r["ip_address"] for r in before.to_pylist()} & _raw_ips(rows)

    db.execute("UPDATE clients SET privacy_level = 'gdpr' WHERE client_id = 'globex'")
    late = make_rows("globex", [H0 + timedelta(minutes=59)], seed=6, batch_id="late")
    insert_rows(db, late)
    assert run_hour(run_dag, H0).state == "success"  # a re-run (operator's clear) after the switch
    assert run_hour(run_dag, H1).state == "success"  # and the next hour, with the late row
    originals = {r["event_id"]: r for r in rows + late}
    for start in (H0, H1):
        _, table = read_hour(s3, "client-globex", folder("globex", start))
        _assert_treated(table, originals)
        assert not {r["ip_address"] for r in table.to_pylist()} & _raw_ips(rows + late)
    left = "SELECT count(*) FROM events_log WHERE client_id = 'globex' AND privacy_level <> 'gdpr'"
    assert db.execute(left).fetchone()[0] == 0
