"""The backup visitor index: erasure finds every backup hour of a visitor, at a cost that follows the visitor.

The export writes, in the transaction that marks an hour's rows, the digests of the
hour's visitors (``backup_visitor_hours``). An erasure request then purges the hours of
the visitor's rows still in ``events_log`` and the hours the index names - those whose
rows retention already deleted included - without reading any other backup object of
the client, and deletes the visitor's index rows once those hours are purged.
Everything runs through the real export and erasure DAGs (``dag.test()``).
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest

from events_pipeline.export import client_hour as exporting
from events_pipeline.export.client_hour import ExportError
from events_pipeline.maintenance.retention import run_retention
from events_pipeline.privacy.visitor_digest import visitor_digest
from tests.conftest import BACKUP_BUCKET, task_states
from tests.integration.export.conftest import add_client, insert_rows, make_rows, run_hour, spread

from .conftest import mark_billed

V = "v-index-4c2e9a71d0"  # the visitor to erase; unique, so no generated row holds it
W = "v-index-late-0b5f3e"  # a visitor whose rows reach an hour on its retry
ACME_BUCKET = "client-acme"
ACME_PREFIX = "exports/acme"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
OLD = NOW - timedelta(days=10) + timedelta(hours=3)  # its rows go with retention (7 days)
OLD_OTHER = OLD + timedelta(hours=1)  # the client's hour without V: never read by the erasure
RECENT = NOW - timedelta(hours=6)  # V's rows still in events_log


@pytest.fixture
def index_env(services: None, clean_tables: None, partitions_back: Any, s3: Any, db: Any) -> Any:
    """Empty tables (the index goes with its clients), the buckets, client acme; yields boto3."""
    db.execute("TRUNCATE maintenance_log, billing_runs, partition_maintenance, gdpr_erasure_tombstones")
    s3.create_bucket(Bucket=ACME_BUCKET)
    add_client(db, "acme", ACME_BUCKET, ACME_PREFIX)
    yield s3
    db.execute("TRUNCATE maintenance_log, billing_runs, partition_maintenance, gdpr_erasure_tombstones")


def _rows(hour: datetime, n: int, *, seed: int, visitor: str | None = None) -> list[dict[str, Any]]:
    """``n`` acme events spread over ``hour``; the first three of ``visitor`` when given."""
    rows = make_rows("acme", spread(hour, n), seed=seed)
    if visitor is not None:
        for row in rows[:3]:
            row["visitor_id"] = visitor
    return rows


def _indexed(db: Any, visitor: str, hour: datetime | None = None) -> list[datetime]:
    """The hours the index names for acme's ``visitor`` (or only ``hour``)."""
    return [
        r[0]
        for r in db.execute(
            "SELECT export_hour FROM backup_visitor_hours WHERE client_id = 'acme' AND visitor_digest = %s "
            "AND (%s::timestamptz IS NULL OR export_hour = %s) ORDER BY export_hour",
            (visitor_digest("acme", visitor), hour, hour),
        )
    ]


def _index_of_hour(db: Any, hour: datetime) -> set[bytes]:
    return {
        bytes(r[0])
        for r in db.execute(
            "SELECT visitor_digest FROM backup_visitor_hours WHERE client_id = 'acme' AND export_hour = %s",
            (hour,),
        )
    }


def _digests_of(db: Any, hour: datetime) -> set[bytes]:
    """Digests of the visitors of acme's rows in ``hour`` (what the index must hold for it)."""
    return {
        visitor_digest("acme", r[0])
        for r in db.execute(
            "SELECT DISTINCT visitor_id FROM events_log WHERE client_id = 'acme' AND export_hour = %s "
            "AND visitor_id IS NOT NULL",
            (hour,),
        )
    }


def _backup_folder(hour: datetime) -> str:
    return f"acme/dt={hour:%Y-%m-%d}/hour={hour:%H}"


def _backup_visitors(s3: Any, hour: datetime) -> Counter[str]:
    """Visitors of every data part of acme's backup folder of ``hour``."""
    found: Counter[str] = Counter()
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=BACKUP_BUCKET, Prefix=_backup_folder(hour) + "/"
    )
    for page in pages:
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".parquet"):
                body = s3.get_object(Bucket=BACKUP_BUCKET, Key=obj["Key"])["Body"].read()
                found.update(pq.read_table(io.BytesIO(body), columns=["visitor_id"]).column(0).to_pylist())
    return found


@pytest.fixture
def backup_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every GetObject / ListObjectsV2 the tasks send to the backup bucket: (operation, key or prefix)."""
    from events_pipeline.common import s3 as s3_module

    calls: list[tuple[str, str]] = []
    real = s3_module.s3_client

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        if params.get("Bucket") == BACKUP_BUCKET:
            calls.append((model.name, params.get("Key") or params.get("Prefix") or ""))

    def counted(conn_id: str | None = None) -> Any:
        client = real(conn_id)
        client.meta.events.register("provide-client-params.s3.GetObject", record)
        client.meta.events.register("provide-client-params.s3.ListObjectsV2", record)
        return client

    monkeypatch.setattr(s3_module, "s3_client", counted)
    return calls


def _age_rows_of(db: Any, hour: datetime) -> None:
    """Date the hour's export back to the hour itself, as if it ran then (retention reads processed_at)."""
    db.execute(
        "UPDATE events_log SET processed_at = export_hour + interval '1 hour' WHERE export_hour = %s", (hour,)
    )


def test_a_visitor_of_an_hour_retention_deleted_is_erased_through_the_index(
    index_env, db, run_dag, backup_reads
):
    """Retention deleted V's rows of OLD; a request without whole_backup purges OLD and reads nothing else."""
    s3 = index_env
    insert_rows(db, _rows(OLD, 20, seed=1, visitor=V))
    insert_rows(db, _rows(OLD_OTHER, 20, seed=2))
    insert_rows(db, _rows(RECENT, 20, seed=3, visitor=V))
    for hour in (OLD, OLD_OTHER, RECENT):
        dr = run_hour(run_dag, hour)
        assert dr.state == "success", task_states(dr)
        assert _index_of_hour(db, hour) == _digests_of(db, hour)  # the index of each published hour
    assert _indexed(db, V) == [OLD, RECENT]
    assert _backup_visitors(s3, OLD)[V] == 3

    # Retention deletes OLD and OLD_OTHER's rows (exported back then, billed, published); the index stays.
    for hour in (OLD, OLD_OTHER):
        _age_rows_of(db, hour)
    mark_billed(db, OLD.date() - timedelta(days=1), NOW.date() - timedelta(days=1))
    assert run_retention(db).deleted == 40
    assert db.execute("SELECT count(*) FROM events_log WHERE visitor_id = %s", (V,)).fetchone()[0] == 3
    assert _indexed(db, V) == [OLD, RECENT]

    rid = db.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id) VALUES ('acme', %s) RETURNING request_id",
        (V,),
    ).fetchone()[0]
    backup_reads.clear()
    dr = run_dag("events_gdpr_erasure", logical_date=datetime.now(UTC))
    assert dr.state == "success", task_states(dr)

    status, whole, rows_deleted = db.execute(
        "SELECT status, whole_backup, rows_deleted FROM gdpr_erasure_requests WHERE request_id = %s", (rid,)
    ).fetchone()
    assert (status, whole, rows_deleted) == ("done", False, 3)
    # Both backup hours lost V, and only V.
    for hour, seed in ((OLD, 1), (RECENT, 3)):
        left = _backup_visitors(s3, hour)
        assert V not in left
        assert sum(left.values()) == 17, seed
    # Hours purged: the row's (RECENT, 3 rows) and the index's (OLD, its rows gone).
    assert db.execute(
        "SELECT export_hour, rows_deleted, purged_at IS NOT NULL FROM gdpr_erasure_hours "
        "WHERE request_id = %s ORDER BY export_hour",
        (rid,),
    ).fetchall() == [(OLD, 0, True), (RECENT, 3, True)]
    # No other backup object of the client was read or listed: only the two folders.
    folders = {_backup_folder(OLD), _backup_folder(RECENT)}
    assert backup_reads, "the erasure read the backup bucket"
    outside = [(op, key) for op, key in backup_reads if key.rsplit("/", 1)[0] not in folders]
    assert outside == []
    assert not any(key.startswith(_backup_folder(OLD_OTHER)) for _, key in backup_reads)
    # The visitor's index rows are gone (the tombstone keeps the digest); the others' stay.
    assert _indexed(db, V) == []
    assert len(_index_of_hour(db, OLD_OTHER)) > 0 and len(_index_of_hour(db, OLD)) > 0
    tomb = db.execute(
        "SELECT count(*) FROM gdpr_erasure_tombstones WHERE client_id = 'acme' AND visitor_digest = %s",
        (visitor_digest("acme", V),),
    ).fetchone()[0]
    assert tomb == 1
    trail = db.execute(
        "SELECT key, lines_removed FROM gdpr_erasure_audit_trail WHERE request_id = %s AND bucket IS NULL "
        "ORDER BY key",
        (rid,),
    ).fetchall()
    assert trail == [("backup_visitor_hours", 2), ("events_log", 3)]


@pytest.fixture
def commit_fails_after_the_index(db: Any) -> Any:
    """A constraint trigger that fails the commit of any transaction that inserted into the index."""
    db.execute(
        "CREATE OR REPLACE FUNCTION test_index_commit_fails() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'injected: the commit fails after the index insert'; END $$"
    )
    db.execute(
        "CREATE CONSTRAINT TRIGGER test_index_commit_fails AFTER INSERT ON backup_visitor_hours "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_index_commit_fails()"
    )
    try:
        yield
    finally:
        db.execute("DROP TRIGGER IF EXISTS test_index_commit_fails ON backup_visitor_hours")
        db.execute("DROP FUNCTION IF EXISTS test_index_commit_fails()")


def _marked(db: Any, hour: datetime) -> int:
    return db.execute(
        "SELECT count(*) FROM events_log WHERE client_id = 'acme' AND export_hour = %s "
        "AND export_status = 'exported'",
        (hour,),
    ).fetchone()[0]


def test_the_index_commits_with_the_hour_or_not_at_all(index_env, db, run_dag, commit_fails_after_the_index):
    """A crash after the index insert, before the commit, leaves neither; a retry leaves both."""
    insert_rows(db, _rows(RECENT, 15, seed=4, visitor=V))
    dr = run_hour(run_dag, RECENT)
    assert dr.state == "failed", task_states(dr)
    assert _marked(db, RECENT) == 0
    assert _index_of_hour(db, RECENT) == set()
    committed = db.execute(
        "SELECT committed_rows FROM export_runs WHERE client_id = 'acme' AND interval_start = %s", (RECENT,)
    ).fetchone()
    assert committed is None or committed[0] is None

    db.execute("DROP TRIGGER test_index_commit_fails ON backup_visitor_hours")
    dr = run_hour(run_dag, RECENT)
    assert dr.state == "success", task_states(dr)
    assert _marked(db, RECENT) == 15
    assert _index_of_hour(db, RECENT) == _digests_of(db, RECENT)
    assert _indexed(db, V) == [RECENT]


def test_a_retry_that_rewrites_the_hour_keeps_every_visitor_and_a_rerun_keeps_the_index(
    index_env, db, run_dag, monkeypatch
):
    """Committed, manifest refused: index and marks are there; the retry adds W; a re-run keeps them all."""
    s3 = index_env
    insert_rows(db, _rows(RECENT, 15, seed=5, visitor=V))

    def put_manifest(self: Any, body: bytes) -> None:
        raise ExportError("injected: the manifest write fails")

    monkeypatch.setattr(exporting._Uploader, "put_manifest", put_manifest)
    dr = run_hour(run_dag, RECENT)
    assert dr.state == "failed", task_states(dr)
    first = _index_of_hour(db, RECENT)
    assert _marked(db, RECENT) == 15  # the marking committed, and the index with it
    assert first == _digests_of(db, RECENT) and visitor_digest("acme", V) in first

    late = _rows(RECENT, 2, seed=6, visitor=W)  # rows that reach the hour before its retry
    for row in late:
        row["created_at"] = RECENT + timedelta(minutes=59)
    insert_rows(db, late)
    monkeypatch.undo()
    dr = run_hour(run_dag, RECENT)
    assert dr.state == "success", task_states(dr)
    assert _marked(db, RECENT) == 17
    second = _index_of_hour(db, RECENT)
    assert second == first | {visitor_digest("acme", W)}
    assert _backup_visitors(s3, RECENT)[W] == 2

    dr = run_hour(run_dag, RECENT)  # published: a re-run
    assert dr.state == "success", task_states(dr)
    assert _index_of_hour(db, RECENT) == second


def test_the_backfill_indexes_the_hours_exported_before_the_index_existed(index_env, db, run_dag):
    """Migration 0130 rebuilds the index of hours exported before it from their rows still stored."""
    from pathlib import Path

    insert_rows(db, _rows(RECENT, 12, seed=7, visitor=V))
    run_hour(run_dag, RECENT)
    expected = _digests_of(db, RECENT)
    assert _index_of_hour(db, RECENT) == expected
    db.execute("DELETE FROM backup_visitor_hours")  # as before the index existed
    backfill = Path(__file__).resolve().parents[3] / "include/sql/migrations/0130_backfill_visitor_index.sql"

    db.execute(backfill.read_text())
    db.execute(backfill.read_text())  # idempotent

    assert _index_of_hour(db, RECENT) == expected
    assert _indexed(db, V) == [RECENT]
