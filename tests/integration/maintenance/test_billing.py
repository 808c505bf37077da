"""Billing: figures from ingest_counts / landing_files / export_runs; stable across retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events_pipeline.maintenance.retention import run_retention

from .conftest import add_client, count, day_start, event, insert_events


def _fixture_day(db, day):
    """Two clients, one file with an unattributed part, two export hours."""
    add_client(db, "acme", retention_days=7)
    add_client(db, "globex", retention_days=7)
    d0 = day_start(day)
    fid = db.execute(
        "INSERT INTO landing_files (bucket, key, etag, status, rows_loaded, rows_rejected, loaded_at) "
        "VALUES ('test-landing', 'incoming/a.ndjson', 'e1', 'processed', 13, 2, %s) RETURNING file_id",
        (d0 + timedelta(hours=1),),
    ).fetchone()[0]
    db.execute(
        "INSERT INTO ingest_counts (file_id, client_id, day, rows_loaded) VALUES "
        "(%s, 'acme', %s, 8), (%s, 'globex', %s, 3), (%s, '', %s, 2)",
        (fid, day, fid, day, fid, day),
    )
    db.execute(
        "INSERT INTO export_runs "
        "(client_id, interval_start, interval_end, status, row_count, bytes, finished_at) "
        "VALUES ('acme', %s, %s, 'succeeded', 5, 1000, %s), ('acme', %s, %s, 'succeeded', 3, 700, %s), "
        "('globex', %s, %s, 'failed', 3, 0, NULL)",
        (
            d0 + timedelta(hours=1),
            d0 + timedelta(hours=2),
            d0 + timedelta(hours=2, minutes=1),
            d0 + timedelta(hours=2),
            d0 + timedelta(hours=3),
            d0 + timedelta(hours=3, minutes=1),
            d0 + timedelta(hours=1),
            d0 + timedelta(hours=2),
        ),
    )
    t = d0 + timedelta(hours=1)
    insert_events(db, [event(t, client_id="acme", status="exported") for _ in range(8)])
    insert_events(db, [event(t, client_id="globex", status="pending") for _ in range(3)])


def _billing(db, day):
    return {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT client_id, events_received, events_rejected, events_unattributed, events_exported, "
            "bytes_exported, last_export_at FROM billing_daily WHERE day = %s",
            (day,),
        )
    }


def test_billing_stable_across_retention(maint_db, partitions_back, run_dag):
    db, today = maint_db, partitions_back
    day = today - timedelta(days=12)
    _fixture_day(db, day)
    logical = day_start(day + timedelta(days=1))  # manual run covers the interval ending here

    dr = run_dag("events_billing", logical_date=logical)
    assert dr.state == "success"
    first = _billing(db, day)
    d0 = day_start(day)
    assert first["acme"] == (8, None, None, 8, 1700, d0 + timedelta(hours=3, minutes=1))
    assert first["globex"] == (3, None, None, 0, 0, None)
    assert first["_total"] == (13, 2, 2, 8, 1700, d0 + timedelta(hours=3, minutes=1))
    assert db.execute("SELECT count(*) FROM billing_runs WHERE day = %s", (day,)).fetchone()[0] == 1

    # Retention now deletes that day's exported rows ...
    assert run_retention(db).deleted == 8
    assert count(db, "client_id = 'acme'") == 0
    # ... and re-running billing (as a backfill would) gives the same figures.
    dr = run_dag("events_billing", logical_date=logical)
    assert dr.state == "success"
    assert _billing(db, day) == first


def test_billing_backfill_days_without_data(maint_db):
    db = maint_db
    add_client(db, "acme")
    from events_pipeline.billing.daily_rollup import compute_days

    day = datetime(2026, 3, 1, tzinfo=UTC).date()
    out = compute_days(db, day, day + timedelta(days=2))
    assert len(out) == 3
    assert db.execute("SELECT count(*) FROM billing_daily").fetchone()[0] == 6  # acme + _total per day
    assert db.execute("SELECT count(*) FROM billing_runs").fetchone()[0] == 3
