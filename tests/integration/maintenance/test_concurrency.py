"""Retention meets an erasure transaction holding events_log: it backs off, nothing is lost."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg

from events_pipeline.maintenance.retention import run_retention

from .conftest import add_client, count, day_start, event, insert_events, mark_billed, publish_exported_hours


def test_retention_backs_off_while_erasure_holds_rows(maint_db, partitions_back, migrated_db):
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    t = day_start(today - timedelta(days=9)) + timedelta(hours=4)
    insert_events(db, [event(t, client_id="acme", status="exported", visitor_id="keep") for _ in range(20)])
    insert_events(db, [event(t, client_id="acme", status="pending", visitor_id="bob") for _ in range(3)])
    insert_events(db, [event(t, client_id="acme", status="pending", visitor_id="amy") for _ in range(2)])
    publish_exported_hours(db)
    mark_billed(db, today - timedelta(days=40), today)

    # An erasure transaction deletes bob's rows and stays open (locks events_log and its partitions).
    erasure = psycopg.connect(migrated_db.dsn("events"))
    erasure.execute("DELETE FROM events_log WHERE client_id = 'acme' AND visitor_id = 'bob'")
    result = {}

    def retention() -> None:
        with psycopg.connect(migrated_db.dsn("events")) as conn:
            result["r"] = run_retention(conn, lock_timeout_ms=100)

    worker = threading.Thread(target=retention)
    worker.start()
    time.sleep(1.0)
    erasure.commit()  # the erasure finishes; retention's next attempt gets through
    erasure.close()
    worker.join(timeout=60)
    assert not worker.is_alive()

    part = next(p for p in result["r"].partitions if p.mode != "skip")
    assert part.mode == "swap"
    assert part.lock_attempts > 1  # it backed off at least once, no deadlock
    assert part.deleted == 20
    # Both transactions' work survives: bob erased, amy (pending) kept, expired rows gone.
    assert count(db, "visitor_id = 'bob'") == 0
    assert count(db, "visitor_id = 'amy'") == 2
    assert count(db) == 2
