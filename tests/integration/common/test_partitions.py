"""Creating a partition never queues behind a long query (and so never blocks the queries after it)."""

from __future__ import annotations

import logging
import time
from datetime import date

import psycopg

from events_pipeline.common.partitions import ensure_daily_partitions, existing_partitions, partition_name

DAY = date(2018, 7, 14)


def _drop(db, day):
    db.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")


def test_partition_creation_gives_up_on_a_held_lock_and_succeeds_later(migrated_db, db, caplog):
    _drop(db, DAY)
    dsn = migrated_db.dsn("events")
    caplog.set_level(logging.WARNING)
    with psycopg.connect(dsn) as long_reader, psycopg.connect(dsn, autocommit=True) as other:
        # a long export-like read: ACCESS SHARE on events_log and its DEFAULT partition
        long_reader.execute("SELECT count(*) FROM events_log")
        started = time.monotonic()
        created = ensure_daily_partitions(other, DAY, DAY, lock_timeout_ms=300)
        waited = time.monotonic() - started
        assert created == []
        assert waited < 5, f"waited {waited:.1f}s for the lock"
        # nothing left queued: a third session reads events_log at once
        with psycopg.connect(dsn, autocommit=True) as third:
            third.execute("SET statement_timeout = '2s'")
            third.execute("SELECT count(*) FROM events_log").fetchone()
        long_reader.rollback()
    assert any(
        "not created now" in r.getMessage() and partition_name(DAY) in r.getMessage() for r in caplog.records
    )

    assert ensure_daily_partitions(db, DAY, DAY) == [partition_name(DAY)]
    assert DAY in existing_partitions(db)
    _drop(db, DAY)
