"""Claims on the real database, without Airflow: concurrent hours never share a row."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg

from events_pipeline.exporting import claim_hour
from events_pipeline.intervals import HourInterval
from tests.integration.export.conftest import HOUR, add_client, insert_rows, make_rows, spread


def test_concurrent_claims_of_different_hours_take_each_row_once(clean_tables, db, migrated_db):
    add_client(db, "acme", "client-acme", "acme")
    hours = [HourInterval(HOUR + timedelta(hours=i)) for i in range(4)]
    for i, h in enumerate(hours):
        insert_rows(db, make_rows("acme", spread(h.start, 50), seed=i))
    results: dict[int, dict] = {}
    barrier = threading.Barrier(len(hours))

    def claim(i: int) -> None:
        with psycopg.connect(migrated_db.dsn("events"), autocommit=True) as conn:
            barrier.wait()
            results[i] = claim_hour(conn, "acme", hours[i], run_id=f"t{i}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(hours))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # each row was claimed exactly once (the UPDATE counts add up to the rows) and none is left:
    # the newest hour (no later run can exist) takes whatever the others did not
    assert sum(r["claimed"] for r in results.values()) == 200
    assert db.execute("SELECT count(*) FROM events_log WHERE export_hour IS NULL").fetchone()[0] == 0
    assert results[3]["mode"] == "through-hour-end"
    # rows are claimed by their own hour or a later one, never by an earlier one
    rows = db.execute("SELECT created_at, export_hour FROM events_log").fetchall()
    assert all(created < export_hour + timedelta(hours=1) for created, export_hour in rows)
    assert db.execute("SELECT count(*), sum(attempts) FROM export_runs").fetchone() == (4, 4)
