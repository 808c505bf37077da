"""The one-rewrite export: rows are read and marked in one snapshot; every crash point is safe.

See docs/decisions/export-one-rewrite.md. Failures are injected into the real
database (a trigger) or at our own upload step (the S3 server is real).
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from events_pipeline.export import client_hour as exporting
from events_pipeline.export.client_hour import ExportError, export_client_hour
from tests.integration.export.conftest import (
    HOUR,
    add_client,
    folder,
    insert_rows,
    list_keys,
    make_rows,
    read_hour,
    spread,
)

H0, H1 = HOUR, HOUR + timedelta(hours=1)
ACME = "exports/acme"


def _export(start):
    return export_client_hour("acme", start, start + timedelta(hours=1), run_id="test")


def _ids(table) -> list[str]:
    return sorted(table.column("event_id").to_pylist())


def _hour_ids(db, start) -> list[str]:
    rows = db.execute(
        "SELECT event_id::text FROM events_log WHERE export_hour = %s AND export_status = 'exported'",
        (start,),
    )
    return sorted(r[0] for r in rows.fetchall())


def _states(db) -> list[tuple]:
    return db.execute(
        "SELECT export_status, export_hour IS NULL, processed_at IS NULL, count(*) FROM events_log "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ).fetchall()


@pytest.fixture
def fail_once_on_mark(db):
    """A real database failure in the marking UPDATE (after every part is uploaded), once."""
    db.execute("CREATE SEQUENCE IF NOT EXISTS test_mark_fail_seq")
    db.execute(
        """
        CREATE OR REPLACE FUNCTION test_mark_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF nextval('test_mark_fail_seq') = 1 THEN
                RAISE EXCEPTION 'injected failure in the marking UPDATE';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    db.execute(
        "CREATE TRIGGER test_mark_fail_once BEFORE UPDATE ON events_log "
        "FOR EACH ROW EXECUTE FUNCTION test_mark_fail_once()"
    )
    yield
    db.execute("DROP TRIGGER IF EXISTS test_mark_fail_once ON events_log")
    db.execute("DROP FUNCTION IF EXISTS test_mark_fail_once()")
    db.execute("DROP SEQUENCE IF EXISTS test_mark_fail_seq")


def _on_first_upload(monkeypatch, action) -> None:
    """Run ``action`` (in its own connection) when the first part is uploaded, then upload as usual."""
    real = exporting._Uploader.upload_file
    done = []

    def upload_file(self, path, info):
        if not done:
            done.append(True)
            action()
        return real(self, path, info)

    monkeypatch.setattr(exporting._Uploader, "upload_file", upload_file)


def test_failure_after_upload_before_commit_marks_nothing(export_env, db, fail_once_on_mark):
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows("acme", spread(H0, 12), seed=1))
    with pytest.raises(Exception, match="injected failure in the marking UPDATE"):
        _export(H0)
    # the attempt removed the parts it had uploaded to both buckets; no row is marked or in an hour
    assert list_keys(s3, "client-acme") == [] and list_keys(s3, "test-backup") == []
    assert _states(db) == [("pending", True, True, 12)]
    assert db.execute("SELECT status FROM export_runs").fetchone() == ("failed",)

    summary = _export(H0)  # the retry
    assert summary["rows"] == 12 and summary["newly_marked"] == 12
    _, table = read_hour(s3, "client-acme", folder(ACME, H0))
    assert _ids(table) == _hour_ids(db, H0) and table.num_rows == 12
    assert _states(db) == [("exported", False, False, 12)]


def test_failure_after_commit_before_manifest_then_retry(export_env, db, monkeypatch):
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows("acme", spread(H0, 12), seed=1))
    real = exporting._Uploader.put_manifest
    calls = []

    def put_manifest(self, body):
        calls.append(True)
        if len(calls) == 1:
            raise ExportError("injected failure before the manifest")
        return real(self, body)

    monkeypatch.setattr(exporting._Uploader, "put_manifest", put_manifest)
    with pytest.raises(ExportError, match="injected failure before the manifest"):
        _export(H0)
    # committed: the rows are in H0 and exported, but no reader sees the hour yet (no manifest)
    assert _states(db) == [("exported", False, False, 12)]
    assert f"{folder(ACME, H0)}/_manifest.json" not in list_keys(s3, "client-acme")
    assert db.execute("SELECT status FROM export_runs").fetchone() == ("failed",)

    # a late row of H0 commits before the retry: the hour has no manifest yet, so it joins H0
    insert_rows(db, make_rows("acme", [H0 + timedelta(minutes=30)], seed=5, batch_id="late"))
    summary = _export(H0)
    assert summary["rows"] == 13 and summary["newly_marked"] == 1
    for bucket, prefix in (("client-acme", ACME), ("test-backup", "acme")):
        manifest, table = read_hour(s3, bucket, folder(prefix, H0))
        assert manifest["row_count"] == 13 and _ids(table) == _hour_ids(db, H0)
    assert db.execute("SELECT status, row_count FROM export_runs").fetchone() == ("succeeded", 13)


def test_row_committed_during_the_export_goes_to_the_next_hour(export_env, db, migrated_db, monkeypatch):
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows("acme", spread(H0, 12), seed=1))
    late = make_rows("acme", [H0 + timedelta(minutes=59)], seed=9, batch_id="during")

    def insert_late() -> None:
        with psycopg.connect(migrated_db.dsn("events"), autocommit=True) as other:
            insert_rows(other, late)

    real_upload = exporting._Uploader.upload_file
    _on_first_upload(monkeypatch, insert_late)
    assert _export(H0)["rows"] == 12  # the row committed after the export's snapshot: not in H0
    _, table = read_hour(s3, "client-acme", folder(ACME, H0))
    assert late[0]["event_id"] not in _ids(table) and table.num_rows == 12
    row = db.execute(
        "SELECT export_status, export_hour FROM events_log WHERE event_id = %s", (late[0]["event_id"],)
    ).fetchone()
    assert row == ("pending", None)

    monkeypatch.setattr(exporting._Uploader, "upload_file", real_upload)
    assert _export(H1)["rows"] == 1  # the next hour takes it (created before H1's end)
    _, table = read_hour(s3, "client-acme", folder(ACME, H1))
    assert _ids(table) == [late[0]["event_id"]]
    assert _states(db) == [("exported", False, False, 13)]


def test_row_deleted_during_the_export_fails_the_attempt_and_the_retry_omits_it(
    export_env, db, migrated_db, monkeypatch
):
    """The DELETE commits after the export's snapshot, before its marking UPDATE. (The marking
    runs during the read: a DELETE either comes first - this failure - or waits for the
    export's commit and then deletes an exported row, which is erasure's normal case. The
    hook below makes it come first.)"""
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    rows = make_rows("acme", spread(H0, 12), seed=1)
    insert_rows(db, rows)
    erased = rows[4]["event_id"]

    def erase() -> None:  # what a GDPR erasure does while the export runs
        with psycopg.connect(migrated_db.dsn("events"), autocommit=True) as other:
            other.execute("DELETE FROM events_log WHERE event_id = %s", (erased,))

    real_mark = exporting._mark_rows

    def erase_then_mark(conn, params, *, published):
        erase()
        return real_mark(conn, params, published=published)

    monkeypatch.setattr(exporting, "_mark_rows", erase_then_mark)
    with pytest.raises(ExportError, match="changed or deleted by another transaction"):
        _export(H0)
    assert _states(db) == [("pending", True, True, 11)]  # nothing marked
    assert list_keys(s3, "client-acme") == []  # the attempt's parts removed

    monkeypatch.setattr(exporting, "_mark_rows", real_mark)
    assert _export(H0)["rows"] == 11
    for bucket, prefix in (("client-acme", ACME), ("test-backup", "acme")):
        _, table = read_hour(s3, bucket, folder(prefix, H0))
        assert erased not in _ids(table) and _ids(table) == _hour_ids(db, H0)


def test_rows_claimed_by_an_earlier_version_are_exported_and_marked(export_env, db):
    """Rows assigned to an hour but still pending (the two-step claim of earlier versions) are kept."""
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows("acme", spread(H0, 6), seed=1))
    db.execute("UPDATE events_log SET export_hour = %s", (H0,))  # claimed, never marked
    insert_rows(db, make_rows("acme", spread(H0, 3, offset_minutes=1), seed=2))
    assert _export(H0)["rows"] == 9
    _, table = read_hour(s3, "client-acme", folder(ACME, H0))
    assert _ids(table) == _hour_ids(db, H0) and table.num_rows == 9
    assert _states(db) == [("exported", False, False, 9)]


def test_a_failed_upload_stops_the_reader_and_leaves_no_open_transaction(export_env, db, monkeypatch):
    import threading

    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_PART_MAX_ROWS", "5")
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_ROW_GROUP_ROWS", "5")
    s3 = export_env
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows("acme", spread(H0, 40), seed=1))
    s3.delete_bucket(Bucket="test-backup")  # the first part's backup upload fails, 7 parts still to read
    with pytest.raises(ExportError, match="test-backup"):
        _export(H0)
    assert not [t for t in threading.enumerate() if t.name in {"export-prefetch", "export-mark"}]
    open_txns = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
    ).fetchone()[0]
    assert open_txns == 0
    assert _states(db) == [("pending", True, True, 40)]
    assert list_keys(s3, "client-acme") == []
    s3.create_bucket(Bucket="test-backup")
