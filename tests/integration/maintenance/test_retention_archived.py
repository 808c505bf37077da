"""Retention deletes archived rows after events_archived_keep_days, so old days are dropped whole.

Archived rows (unattributed, or never taken by their client's export) used to survive for
ever, so every day kept a few survivors and no partition was ever dropped. They now go
``events_archive_after_days`` + ``events_archived_keep_days`` (30 + 7) days after
``created_at``; pending rows still never go, and billing's figures do not move.
"""

from __future__ import annotations

from datetime import timedelta

from events_pipeline.billing.daily_rollup import compute_days
from events_pipeline.common.partitions import existing_partitions, partition_name
from events_pipeline.maintenance.retention import run_retention

from .conftest import add_client, count, day_start, event, insert_events, mark_billed, publish_exported_hours


def _day(db, today, days_ago: int, *, pending_unattributed: bool = False) -> list[dict]:
    """A day of acme's exported rows (expired), one unattributed and one attributed archived row."""
    t = day_start(today - timedelta(days=days_ago)) + timedelta(hours=3)
    rows = [event(t, client_id="acme", status="exported", visitor_id=f"x{days_ago}") for _ in range(6)]
    rows.append(
        event(t, client_id=None, status="archived", site_id="unknown.example", visitor_id=f"u{days_ago}")
    )
    rows.append(event(t, client_id="acme", status="archived", visitor_id=f"a{days_ago}"))
    if pending_unattributed:
        rows.append(
            event(t, client_id=None, status="pending", site_id="unknown.example", visitor_id=f"p{days_ago}")
        )
    insert_events(db, rows)
    return rows


def _part(result, today, days_ago):
    name = partition_name(today - timedelta(days=days_ago))
    return next(p for p in result.partitions if p.partition == name)


def test_archived_rows_past_their_keep_days_go_and_the_day_is_dropped(maint_db, partitions_back):
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    mark_billed(db, today - timedelta(days=40), today - timedelta(days=1))
    _day(db, today, 39)  # archived 9 days ago, kept 7: everything goes
    _day(db, today, 38, pending_unattributed=True)  # a row still pending (never archived) survives
    _day(db, today, 20)  # archived rows kept: archivable only in 10 days
    publish_exported_hours(db)

    result = run_retention(db, archive_after_days=30, archived_keep_days=7)

    gone = _part(result, today, 39)
    assert (gone.mode, gone.proof, gone.deleted, gone.kept) == ("drop", True, 8, 0)
    assert (today - timedelta(days=39)) not in existing_partitions(db)
    kept_pending = _part(result, today, 38)
    assert (kept_pending.mode, kept_pending.deleted, kept_pending.kept) == ("swap", 8, 1)
    assert count(db, "visitor_id = 'p38' AND export_status = 'pending'") == 1
    young = _part(result, today, 20)
    assert (young.mode, young.deleted, young.kept) == ("swap", 6, 2)
    assert count(db, "export_status = 'archived'") == 2
    assert result.archived_cutoff is not None
    assert result.as_dict()["archived_cutoff"] == result.archived_cutoff.isoformat()


def test_a_negative_keep_days_keeps_archived_rows_for_ever(maint_db, partitions_back):
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    mark_billed(db, today - timedelta(days=40), today - timedelta(days=1))
    _day(db, today, 39)
    publish_exported_hours(db)

    result = run_retention(db, archive_after_days=30, archived_keep_days=-1)

    part = _part(result, today, 39)
    assert (part.mode, part.proof, part.deleted, part.kept) == ("swap", False, 6, 2)
    assert count(db, "export_status = 'archived'") == 2
    assert result.archived_cutoff is None


def test_archived_rows_of_unbilled_days_wait_for_billing(maint_db, partitions_back):
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    mark_billed(db, today - timedelta(days=40), today - timedelta(days=39))  # 38 days ago: not billed
    _day(db, today, 38)
    publish_exported_hours(db)

    run_retention(db, archive_after_days=30, archived_keep_days=7)

    assert count(db, "export_status = 'archived'") == 2
    assert count(db) == 8


def test_batch_mode_deletes_old_archived_rows_of_the_default_partition_too(maint_db, partitions_back):
    """The DEFAULT partition is always cleaned in batches: the same rule row by row."""
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    mark_billed(db, today - timedelta(days=60), today - timedelta(days=1))
    t = day_start(today - timedelta(days=50)) + timedelta(hours=2)  # no daily partition: DEFAULT
    insert_events(
        db,
        [
            event(t, client_id=None, status="archived", site_id="unknown.example", visitor_id="u"),
            event(t, client_id="ghost", status="archived", visitor_id="g"),  # a client that is gone
            event(t, client_id=None, status="pending", site_id="unknown.example", visitor_id="p"),
        ],
    )

    result = run_retention(db, archive_after_days=30, archived_keep_days=7)

    default = next(p for p in result.partitions if p.partition == "events_log_default")
    assert (default.mode, default.deleted) == ("batch", 2)
    assert [r[0] for r in db.execute("SELECT visitor_id FROM events_log")] == ["p"]


def test_billing_does_not_move_when_archived_rows_and_their_day_are_dropped(maint_db, partitions_back):
    """Billing reads ingest_counts / landing_files / export_runs only: recomputing after the drop agrees."""
    db, today = maint_db, partitions_back
    add_client(db, "acme", retention_days=7)
    day = today - timedelta(days=39)
    fid = db.execute(
        "INSERT INTO landing_files (bucket, key, etag, status, rows_loaded, rows_rejected, loaded_at) "
        "VALUES ('test-landing', 'incoming/b.ndjson', 'e2', 'processed', 8, 0, %s) RETURNING file_id",
        (day_start(day) + timedelta(hours=3),),
    ).fetchone()[0]
    db.execute(
        "INSERT INTO ingest_counts (file_id, client_id, day, rows_loaded) VALUES (%s, 'acme', %s, 7), "
        "(%s, '', %s, 1)",
        (fid, day, fid, day),
    )
    _day(db, today, 39)
    publish_exported_hours(db)
    compute_days(db, today - timedelta(days=40), today - timedelta(days=1))
    query = "SELECT * FROM billing_daily WHERE day = %s ORDER BY client_id"
    before = db.execute(query, (day,)).fetchall()
    assert before

    run_retention(db, archive_after_days=30, archived_keep_days=7)
    assert day not in existing_partitions(db)
    compute_days(db, day, day)

    after = db.execute(query, (day,)).fetchall()
    strip = [tuple(v for k, v in zip(cols(db), r, strict=True) if k != "computed_at") for r in before]
    assert strip == [tuple(v for k, v in zip(cols(db), r, strict=True) if k != "computed_at") for r in after]


def cols(db) -> list[str]:
    """billing_daily's column names."""
    return [
        r[0]
        for r in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'billing_daily' "
            "ORDER BY ordinal_position"
        )
    ]
