"""Archival boundaries against the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events_pipeline.maintenance.archival import run_archival

from .conftest import add_client, count, event, insert_events


@pytest.mark.parametrize("indexed_max_rows", [50_000, 0], ids=["indexed", "blocks"])
def test_archival_boundary_and_rerun(maint_db, partitions_back, indexed_max_rows):
    """Both ways of finding the rows (partial indexes, block batches) archive exactly the same ones."""
    db = maint_db
    add_client(db, "acme")
    now = datetime.now(UTC).replace(microsecond=0)
    cutoff = now - timedelta(days=30)
    insert_events(
        db,
        [
            event(cutoff - timedelta(seconds=1), status="pending"),  # just older: archived
            event(cutoff - timedelta(days=3), status="pending", client_id=None, site_id="x.org"),
            event(cutoff + timedelta(seconds=1), status="pending"),  # just younger: stays pending
            event(cutoff - timedelta(days=1), status="exported"),  # exported: untouched
            event(now - timedelta(days=90), status="pending"),  # DEFAULT partition
        ],
    )
    res = run_archival(db, now=now, batch_blocks=1, indexed_max_rows=indexed_max_rows)
    assert set(res["modes"].values()) - {"skip"} == {"indexed" if indexed_max_rows else "blocks"}
    assert res["archived"] == 3
    assert res["per_client"] == {"acme": 2, "": 1}
    assert count(db, "export_status = 'archived'") == 3
    assert count(db, "export_status = 'pending' AND created_at > %s", (cutoff,)) == 1
    assert count(db, "export_status = 'exported'") == 1
    logged = dict(
        db.execute(
            "SELECT coalesce(client_id, ''), rows_affected FROM maintenance_log WHERE step = 'archival'"
        )
    )
    assert logged == {"acme": 2, "": 1}

    # Re-run: nothing more; days wholly before the cutoff are not scanned again.
    again = run_archival(db, now=now, indexed_max_rows=indexed_max_rows)
    assert again["archived"] == 0
    done_day = (cutoff - timedelta(days=3)).date()
    assert done_day not in [p[-8:] for p in again["partitions"]]
    assert f"events_log_p{done_day:%Y%m%d}" not in again["partitions"]


@pytest.mark.parametrize("indexed_max_rows", [50_000, 0], ids=["indexed", "blocks"])
def test_rows_claimed_by_an_unpublished_export_hour_are_not_archived(
    maint_db, partitions_back, indexed_max_rows
):
    """The export of that hour owns them: archiving would leave them 'archived' once it publishes."""
    db = maint_db
    add_client(db, "acme")
    now = datetime.now(UTC).replace(microsecond=0)
    old = now - timedelta(days=31)
    hour = old.replace(minute=0, second=0)
    insert_events(db, [event(old, status="pending", export_hour=hour), event(old, status="pending")])
    res = run_archival(db, now=now, indexed_max_rows=indexed_max_rows)
    assert res["archived"] == 1
    assert count(db, "export_status = 'pending' AND export_hour IS NOT NULL") == 1
    assert count(db, "export_status = 'archived' AND export_hour IS NULL") == 1
