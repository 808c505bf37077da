"""Retention against the real PostgreSQL: per-client retention, modes, the billing gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events_pipeline.common.partitions import existing_partitions
from events_pipeline.maintenance.retention import run_retention

from .conftest import add_client, count, day_start, event, insert_events, mark_billed, publish_exported_hours


def _seed(db, today):
    """acme keeps 7 days, globex 20; rows 12 days old are exported (plus some pending/archived)."""
    add_client(db, "acme", retention_days=7)
    add_client(db, "globex", retention_days=20)
    old = day_start(today - timedelta(days=12)) + timedelta(hours=5)
    rows = [event(old, client_id="acme", status="exported") for _ in range(30)]
    rows += [event(old, client_id="globex", status="exported") for _ in range(10)]
    rows += [event(old, client_id="acme", status="pending") for _ in range(2)]
    rows += [event(old, client_id="acme", status="archived") for _ in range(1)]
    rows += [event(old, client_id=None, status="pending", site_id="unknown.example") for _ in range(1)]
    # A day where every row is expired: its partition is dropped.
    older = day_start(today - timedelta(days=15)) + timedelta(hours=1)
    rows += [event(older, client_id="acme", status="exported") for _ in range(20)]
    # Recent exported rows: kept.
    recent = day_start(today - timedelta(days=2))
    rows += [event(recent, client_id="acme", status="exported") for _ in range(5)]
    insert_events(db, rows)
    publish_exported_hours(db)
    return old, older


def test_retention_per_client_and_pending_never_deleted(maint_db, partitions_back, run_dag, s3):
    # (s3: the DAG's landing-expiry step needs the landing bucket to exist)
    db, today = maint_db, partitions_back
    old, _ = _seed(db, today)
    mark_billed(db, today - timedelta(days=40), today - timedelta(days=1))

    dr = run_dag("events_maintenance", logical_date=datetime.now(UTC))
    assert dr.state == "success"

    # acme's expired rows are gone, globex (20 days) keeps its own, pending/archived stay.
    assert (
        count(
            db,
            "client_id = 'acme' AND export_status = 'exported' AND created_at < %s",
            (old + timedelta(days=1),),
        )
        == 0
    )
    assert count(db, "client_id = 'globex'") == 10
    assert count(db, "export_status = 'pending' AND created_at < %s", (old + timedelta(days=1),)) == 3
    assert count(db, "export_status = 'archived'") == 1
    assert count(db, "created_at >= %s", (day_start(today - timedelta(days=2)),)) == 5
    parts = existing_partitions(db)
    assert (today - timedelta(days=15)) not in parts  # wholly expired: dropped
    assert (today - timedelta(days=12)) in parts  # survivors kept under the same name
    modes = dict(
        db.execute("SELECT partition_name, details->>'mode' FROM maintenance_log WHERE step='retention'")
    )
    assert modes[f"events_log_p{today - timedelta(days=15):%Y%m%d}"] == "drop"
    assert modes[f"events_log_p{today - timedelta(days=12):%Y%m%d}"] in {"swap", "batch"}

    # Re-running changes nothing.
    before = count(db)
    dr = run_dag("events_maintenance", logical_date=datetime.now(UTC))
    assert dr.state == "success"
    assert count(db) == before


def test_retention_modes_agree(maint_db, partitions_back):
    """swap and batch modes delete exactly the same rows."""
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    add_client(db, "globex", retention_days=20)
    mark_billed(db, today - timedelta(days=40), today)
    results = {}
    for mode, days_ago in (("swap", 11), ("batch", 10)):
        t = day_start(today - timedelta(days=days_ago)) + timedelta(hours=3)
        insert_events(db, [event(t, client_id="acme", status="exported") for _ in range(40)])
        insert_events(db, [event(t, client_id="globex", status="exported") for _ in range(7)])
        insert_events(db, [event(t, client_id="acme", status="pending") for _ in range(3)])
        publish_exported_hours(db)
        res = run_retention(db, force_mode=mode, batch_blocks=1)
        part = next(p for p in res.partitions if p.partition == f"events_log_p{t:%Y%m%d}")
        assert part.mode == mode
        results[mode] = part.deleted
        assert (
            count(
                db, "created_at >= %s AND created_at < %s", (t - timedelta(hours=3), t + timedelta(hours=21))
            )
            == 10
        )
    assert results["swap"] == results["batch"] == 40
    # The swapped-in partition carries exactly the parent's indexes, attached (no duplicates).
    swapped = f"events_log_p{today - timedelta(days=11):%Y%m%d}"
    normal = f"events_log_p{today - timedelta(days=10):%Y%m%d}"
    n_idx = "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass"
    assert db.execute(n_idx, (swapped,)).fetchone()[0] == db.execute(n_idx, (normal,)).fetchone()[0]
    attached = (
        "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid "
        "WHERE x.indrelid = %s::regclass"
    )
    assert db.execute(attached, (swapped,)).fetchone()[0] == db.execute(n_idx, (swapped,)).fetchone()[0]


def test_retention_waits_for_billing(maint_db, partitions_back):
    """Rows of a day billing has not rolled up are never deleted."""
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    t = day_start(today - timedelta(days=10)) + timedelta(hours=2)
    insert_events(db, [event(t, client_id="acme", status="exported") for _ in range(5)])
    publish_exported_hours(db)

    assert run_retention(db).deleted == 0  # nothing billed yet
    mark_billed(db, today - timedelta(days=12), today - timedelta(days=11))
    assert run_retention(db).deleted == 0  # day not billed yet
    mark_billed(db, today - timedelta(days=10), today - timedelta(days=10))
    assert run_retention(db).deleted == 5


def test_retention_default_partition_batches(maint_db, partitions_back):
    """Rows sitting in the DEFAULT partition (a day without partition) are deleted in batches."""
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    t = day_start(today - timedelta(days=60)) + timedelta(hours=2)
    insert_events(db, [event(t, client_id="acme", status="exported") for _ in range(4)])
    insert_events(db, [event(t, client_id="acme", status="pending")])
    publish_exported_hours(db)
    mark_billed(db, today - timedelta(days=70), today)
    res = run_retention(db)
    assert [(p.partition, p.mode, p.deleted) for p in res.partitions if p.mode != "skip"] == [
        ("events_log_default", "batch", 4)
    ]
    assert count(db) == 1


def test_partly_expired_day_is_deferred_then_swapped(maint_db, partitions_back):
    """A day mostly expiring tomorrow is not batch-deleted today; tomorrow's run takes it whole."""
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    mark_billed(db, today - timedelta(days=40), today + timedelta(days=1))
    now = day_start(today) + timedelta(hours=12)
    created = now - timedelta(days=7, hours=3)
    insert_events(db, [event(created, status="exported", processed_at=created + timedelta(hours=2))] * 2)
    insert_events(db, [event(created, status="exported", processed_at=created + timedelta(hours=5))] * 8)
    publish_exported_hours(db)
    name = f"events_log_p{created:%Y%m%d}"

    first = run_retention(db, now=now)
    assert {p.partition: p.mode for p in first.partitions}[name] == "deferred"
    assert count(db) == 10
    second = run_retention(db, now=now + timedelta(days=1))
    assert {p.partition: (p.mode, p.deleted) for p in second.partitions}[name] == ("drop", 10)
    assert count(db) == 0


def _published(db, client_id, hour, finished_at):
    db.execute(
        "INSERT INTO export_runs (client_id, interval_start, interval_end, status, row_count, finished_at) "
        "VALUES (%s, %s, %s, 'succeeded', 0, %s)",
        (client_id, hour, hour + timedelta(hours=1), finished_at),
    )


def test_wholly_expired_day_is_proven_from_indexes_and_dropped(maint_db, partitions_back):
    """Every hour of the day published long ago: dropped on the index-only proof, no heap scan."""
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    add_client(db, "globex", retention_days=7)
    mark_billed(db, today - timedelta(days=40), today - timedelta(days=1))
    day = day_start(today - timedelta(days=15))
    rows = []
    for client, hours in (("acme", (1, 2, 7)), ("globex", (2, 23))):
        for h in hours:
            hour = day + timedelta(hours=h)
            rows += [event(hour + timedelta(minutes=m), client_id=client, status="exported") for m in (1, 30)]
            _published(db, client, hour, hour + timedelta(hours=1, minutes=5))
    insert_events(db, rows)

    result = run_retention(db)
    part = next(p for p in result.partitions if p.partition == f"events_log_p{day:%Y%m%d}")
    assert (part.mode, part.proof, part.deleted, part.kept) == ("drop", True, len(rows), 0)
    assert day.date() not in existing_partitions(db)


def test_proof_refused_falls_back_to_the_exact_scan(maint_db, partitions_back):
    """An hour whose run has not succeeded blocks the proof; rows are then judged one by one."""
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    mark_billed(db, today - timedelta(days=40), today - timedelta(days=1))
    day = day_start(today - timedelta(days=15))
    published, unpublished = day + timedelta(hours=1), day + timedelta(hours=2)
    _published(db, "acme", published, published + timedelta(hours=1))
    rows = [event(published + timedelta(minutes=5), status="exported") for _ in range(4)]
    # claimed by an hour whose run has not succeeded: still pending, must survive
    rows += [event(unpublished + timedelta(minutes=5), status="pending", export_hour=unpublished)]
    insert_events(db, rows)

    result = run_retention(db)
    part = next(p for p in result.partitions if p.partition == f"events_log_p{day:%Y%m%d}")
    assert part.proof is False
    assert (part.deleted, part.kept) == (4, 1)
    assert count(db, "export_status = 'pending' AND export_hour = %s", (unpublished,)) == 1


def test_crash_between_detach_and_drop_is_finished_by_the_next_run(maint_db, partitions_back, monkeypatch):
    """The task dies after the DETACH committed, before the DROP: the next run drops the table."""
    import events_pipeline.maintenance.retention as retention

    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    mark_billed(db, today - timedelta(days=40), today - timedelta(days=1))
    t = day_start(today - timedelta(days=15)) + timedelta(hours=4)
    insert_events(db, [event(t, client_id="acme", status="exported") for _ in range(6)])
    insert_events(db, [event(day_start(today), client_id="acme", status="pending") for _ in range(2)])
    publish_exported_hours(db)
    name = f"events_log_p{t:%Y%m%d}"

    def die(conn, table):
        raise RuntimeError(f"worker killed before dropping {table}")

    monkeypatch.setattr(retention, "drop_detached", die)
    with pytest.raises(RuntimeError, match="killed"):
        run_retention(db)
    # The DETACH committed: the rows are no longer in events_log, the old table waits.
    assert count(db) == 2
    assert t.date() not in existing_partitions(db)
    assert db.execute("SELECT to_regclass(%s)", (f"{name}_expired",)).fetchone()[0] is not None

    monkeypatch.undo()
    again = run_retention(db)
    assert db.execute("SELECT to_regclass(%s)", (f"{name}_expired",)).fetchone()[0] is None
    assert again.deleted == 0  # nothing deleted twice, nothing else touched
    assert count(db) == 2


def test_whole_day_drop_reports_rows_gone_before_files_unlinked(maint_db, partitions_back):
    """A drop records when the rows left events_log and how much disk its DROP gave back."""
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    mark_billed(db, today - timedelta(days=40), today - timedelta(days=1))
    t = day_start(today - timedelta(days=15)) + timedelta(hours=4)
    insert_events(db, [event(t, client_id="acme", status="exported") for _ in range(5)])
    publish_exported_hours(db)
    part = next(p for p in run_retention(db).partitions if p.mode == "drop")
    assert part.bytes_freed > 0
    assert 0 < part.detached_s <= part.seconds
    assert part.drop_s <= part.seconds
    details = db.execute(
        "SELECT details FROM maintenance_log WHERE step = 'retention' AND partition_name = %s",
        (part.partition,),
    ).fetchone()[0]
    assert details["bytes_freed"] == part.bytes_freed


@pytest.mark.parametrize("mode", ["swap", "batch"])
def test_rows_of_an_hour_whose_export_never_published_survive(maint_db, partitions_back, mode):
    """Rows marked exported by an hour whose run did not succeed (manifest never written) stay.

    Otherwise retention deletes them and a later re-run of that hour publishes it
    without them (contract §6.1, §5.3). Once the hour's run succeeds, they go.
    """
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    mark_billed(db, today - timedelta(days=40), today - timedelta(days=1))
    day = day_start(today - timedelta(days=12))
    published, unpublished = day + timedelta(hours=3), day + timedelta(hours=4)
    insert_events(db, [event(published + timedelta(minutes=m), status="exported") for m in range(6)])
    insert_events(db, [event(unpublished + timedelta(minutes=m), status="exported") for m in range(4)])
    _published(db, "acme", published, published + timedelta(hours=1, minutes=5))
    db.execute(
        "INSERT INTO export_runs (client_id, interval_start, interval_end, status, row_count, error) "
        "VALUES ('acme', %s, %s, 'failed', 4, 'manifest write failed: S3 503')",
        (unpublished, unpublished + timedelta(hours=1)),
    )

    first = run_retention(db, force_mode=mode, batch_blocks=1)
    assert first.deleted == 6
    assert count(db, "export_hour = %s", (published,)) == 0
    assert count(db, "export_hour = %s AND export_status = 'exported'", (unpublished,)) == 4

    db.execute(
        "UPDATE export_runs SET status = 'succeeded', finished_at = now(), error = NULL "
        "WHERE client_id = 'acme' AND interval_start = %s",
        (unpublished,),
    )
    second = run_retention(db, force_mode=mode, batch_blocks=1)
    assert second.deleted == 4
    assert count(db) == 0


def test_exported_rows_without_an_export_hour_are_never_deleted(maint_db, partitions_back):
    """A row marked exported outside the export (no export_hour) has no published hour: kept."""
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    mark_billed(db, today - timedelta(days=40), today - timedelta(days=1))
    t = day_start(today - timedelta(days=12)) + timedelta(hours=2)
    rows = [event(t, status="exported") for _ in range(3)]
    for r in rows:
        r["export_hour"] = None
    insert_events(db, rows)
    assert run_retention(db).deleted == 0
    assert count(db) == 3
