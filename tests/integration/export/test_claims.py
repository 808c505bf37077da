"""Concurrent exports of one client, without Airflow: hours never share a row, none is left out."""

from __future__ import annotations

import threading
from datetime import timedelta

from events_pipeline.export.client_hour import export_client_hour
from tests.integration.export.conftest import HOUR, add_client, insert_rows, make_rows, spread


def test_concurrent_exports_of_different_hours_take_each_row_once(export_env, db):
    add_client(db, "acme", "client-acme", "acme")
    starts = [HOUR + timedelta(hours=i) for i in range(4)]
    for i, start in enumerate(starts):
        insert_rows(db, make_rows("acme", spread(start, 50), seed=i))
    results: dict[int, dict] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(starts))

    def export(i: int) -> None:
        barrier.wait()
        try:
            results[i] = export_client_hour("acme", starts[i], starts[i] + timedelta(hours=1), run_id=f"t{i}")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=export, args=(i,)) for i in range(len(starts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    # every row was taken exactly once (the per-hour counts add up to the rows) and none is left
    assert sum(r["rows"] for r in results.values()) == 200
    assert sum(r["newly_marked"] for r in results.values()) == 200
    left = db.execute(
        "SELECT count(*) FROM events_log WHERE export_hour IS NULL OR export_status <> 'exported'"
    )
    assert left.fetchone()[0] == 0
    # rows are taken by their own hour or a later one, never by an earlier one
    rows = db.execute("SELECT created_at, export_hour FROM events_log").fetchall()
    assert all(created < export_hour + timedelta(hours=1) for created, export_hour in rows)
    runs = db.execute(
        "SELECT count(*), sum(attempts), sum(row_count) FROM export_runs WHERE status = 'succeeded'"
    )
    assert runs.fetchone() == (4, 4, 200)
