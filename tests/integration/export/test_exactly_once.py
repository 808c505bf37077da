"""Exactly once, nothing lost: late rows, re-runs, backfills, crashes between steps, empty hours."""

from __future__ import annotations

from datetime import timedelta

import pytest
from psycopg import sql

from tests.conftest import task_states
from tests.integration.export.conftest import (
    HOUR,
    add_client,
    folder,
    insert_rows,
    list_keys,
    make_rows,
    read_hour,
    run_hour,
    spread,
)

H0, H1, H2 = HOUR, HOUR + timedelta(hours=1), HOUR + timedelta(hours=2)
ACME = "exports/acme"


def _ids(table) -> list[str]:
    return table.column("event_id").to_pylist()


def _db_ids(db, where: str = "TRUE", params: tuple = ()) -> list[str]:
    return [
        str(r[0])
        for r in db.execute(
            sql.SQL(
                "SELECT event_id FROM events_log WHERE client_id = 'acme' AND {} ORDER BY created_at, id"
            ).format(sql.SQL(where)),
            params,
        ).fetchall()
    ]


def test_late_row_goes_to_next_hour_and_reruns_rewrite_same_rows(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows("acme", spread(H0, 20), seed=1))

    assert run_hour(run_dag, H0).state == "success"
    m0, t0 = read_hour(s3, "client-acme", folder(ACME, H0))
    assert m0["row_count"] == 20

    # A load transaction that STARTED inside H0 (created_at = its start) but
    # committed after H0's export ran: its rows appear now, with an H0 created_at.
    late = make_rows("acme", [H0 + timedelta(minutes=59, seconds=59)] * 3, seed=9, batch_id="late")
    insert_rows(db, late)
    insert_rows(db, make_rows("acme", spread(H1, 10), seed=2))

    assert run_hour(run_dag, H1).state == "success"
    m1, t1 = read_hour(s3, "client-acme", folder(ACME, H1))
    assert m1["row_count"] == 13
    assert {r["event_id"] for r in late} <= set(_ids(t1))
    assert not set(_ids(t0)) & set(_ids(t1))

    # Re-run of the published hour H0: same keys, same rows (the late rows stay in H1).
    keys_before = list_keys(s3, "client-acme")
    assert run_hour(run_dag, H0).state == "success"
    m0b, t0b = read_hour(s3, "client-acme", folder(ACME, H0))
    assert _ids(t0b) == _ids(t0)
    assert [f["sha256"] for f in m0b["files"]] == [f["sha256"] for f in m0["files"]]
    assert list_keys(s3, "client-acme") == keys_before
    # every row of the client is in exactly one hour's export
    exported = _ids(t0b) + _ids(t1)
    assert sorted(exported) == sorted(_db_ids(db)) and len(set(exported)) == len(exported)
    assert db.execute("SELECT count(*) FROM events_log WHERE export_status <> 'exported'").fetchone()[0] == 0
    attempts = db.execute(
        "SELECT attempts FROM export_runs WHERE client_id = 'acme' AND interval_start = %s", (H0,)
    ).fetchone()[0]
    assert attempts == 2


def test_backfill_of_old_hour_claims_only_its_own_rows(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows("acme", spread(H2, 5), seed=1))
    assert run_hour(run_dag, H2).state == "success"  # newest hour so far: claims everything before its end

    # Rows of H1 that arrive after H2 ran (e.g. restored data), plus a row of H0.
    insert_rows(db, make_rows("acme", spread(H1, 4), seed=2))
    insert_rows(db, make_rows("acme", spread(H0, 2), seed=3))
    # First-time backfill of H1: a later hour already ran, so only rows created in H1 are claimed.
    assert run_hour(run_dag, H1).state == "success"
    m1, _ = read_hour(s3, "client-acme", folder(ACME, H1))
    assert m1["row_count"] == 4
    pending = db.execute("SELECT count(*) FROM events_log WHERE export_hour IS NULL").fetchone()[0]
    assert pending == 2  # H0's rows wait for the next newest-hour run
    assert run_hour(run_dag, H2 + timedelta(hours=1)).state == "success"
    m3, _ = read_hour(s3, "client-acme", folder(ACME, H2 + timedelta(hours=1)))
    assert m3["row_count"] == 2


def test_empty_hour_writes_zero_row_manifest(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    assert run_hour(run_dag, H0).state == "success"
    for bucket, prefix in (("client-acme", ACME), ("test-backup", "acme")):
        manifest, table = read_hour(s3, bucket, folder(prefix, H0))
        assert manifest["row_count"] == 0 and manifest["files"] == [] and table.num_rows == 0
        assert list_keys(s3, bucket, prefix) == [f"{folder(prefix, H0)}/_manifest.json"]
    run = db.execute("SELECT status, row_count, bytes FROM export_runs").fetchone()
    assert run == ("succeeded", 0, 0)


@pytest.fixture
def fail_once_on_publish(db):
    """A real database failure at the marking step, once: the first attempt to
    record a run as 'succeeded' raises; the retry goes through."""
    db.execute("CREATE SEQUENCE IF NOT EXISTS test_export_fail_seq")
    db.execute(
        """
        CREATE OR REPLACE FUNCTION test_export_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status = 'succeeded' AND nextval('test_export_fail_seq') = 1 THEN
                RAISE EXCEPTION 'injected failure between upload and marking';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    db.execute(
        "CREATE TRIGGER test_export_fail_once BEFORE UPDATE ON export_runs "
        "FOR EACH ROW EXECUTE FUNCTION test_export_fail_once()"
    )
    yield
    db.execute("DROP TRIGGER IF EXISTS test_export_fail_once ON export_runs")
    db.execute("DROP FUNCTION IF EXISTS test_export_fail_once()")
    db.execute("DROP SEQUENCE IF EXISTS test_export_fail_seq")


def test_crash_between_upload_and_marking_then_retry(export_env, db, run_dag, fail_once_on_publish):
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows("acme", spread(H0, 12), seed=1))
    dr = run_hour(run_dag, H0)  # attempt 1 uploads, then fails to mark; the retry completes
    assert dr.state == "success", task_states(dr)
    _, table = read_hour(s3, "client-acme", folder(ACME, H0))
    assert sorted(_ids(table)) == sorted(_db_ids(db))
    assert len(set(_ids(table))) == 12
    run = db.execute("SELECT status, attempts, row_count FROM export_runs").fetchone()
    assert run == ("succeeded", 2, 12)
    assert db.execute("SELECT count(*) FROM events_log WHERE export_status = 'exported'").fetchone()[0] == 12


def test_crash_between_the_two_buckets_then_rerun(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows("acme", spread(H0, 12), seed=1))
    s3.delete_bucket(Bucket="test-backup")  # the client upload succeeds, the backup upload fails
    dr = run_hour(run_dag, H0)
    assert dr.state == "failed"
    assert list_keys(s3, "client-acme") == []  # the failed attempt removed its part; no manifest
    status, error = db.execute("SELECT status, error FROM export_runs").fetchone()
    assert status == "failed" and "test-backup" in error and "acme" in error
    assert db.execute("SELECT count(*) FROM events_log WHERE export_status = 'pending'").fetchone()[0] == 12

    # Meanwhile a late row of H0 commits; the retry takes it (H0 is not published yet).
    insert_rows(db, make_rows("acme", [H0 + timedelta(minutes=30)], seed=5, batch_id="late"))
    s3.create_bucket(Bucket="test-backup")
    assert run_hour(run_dag, H0).state == "success"
    _, client_table = read_hour(s3, "client-acme", folder(ACME, H0))
    _, backup_table = read_hour(s3, "test-backup", folder("acme", H0))
    assert client_table.equals(backup_table)
    assert sorted(_ids(client_table)) == sorted(_db_ids(db)) and client_table.num_rows == 13
    assert db.execute("SELECT status, row_count FROM export_runs").fetchone() == ("succeeded", 13)


def test_unattributed_rows_wait_until_reattributed(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows(None, spread(H0, 3), seed=1))
    assert run_hour(run_dag, H0).state == "success"
    assert read_hour(s3, "client-acme", folder(ACME, H0))[0]["row_count"] == 0
    db.execute("UPDATE events_log SET client_id = 'acme' WHERE client_id IS NULL")  # a mapping appeared
    assert run_hour(run_dag, H1).state == "success"
    assert read_hour(s3, "client-acme", folder(ACME, H1))[0]["row_count"] == 3
