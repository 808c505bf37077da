"""Migrations on the real PostgreSQL: apply, re-apply, concurrency, edits, partitions."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import psycopg
import pytest

from events_pipeline.common.migrations import MigrationError, apply_migrations, discover
from events_pipeline.common.partitions import ensure_daily_partitions, existing_partitions, partition_name
from tests.conftest import task_states


@pytest.fixture
def fresh_db(postgres):
    """A brand-new empty database, dropped after the test."""
    name = "migrations_test"
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    yield postgres.dsn(name)
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_migrations_apply_then_reapply_is_a_noop(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        first = apply_migrations(conn)
        second = apply_migrations(conn)
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    assert first == [m.version for m in discover()]
    assert second == []
    assert {
        "events_log",
        "clients",
        "client_domains",
        "landing_files",
        "export_runs",
        "billing_daily",
        "gdpr_erasure_requests",
        "schema_migrations",
    } <= tables


def test_concurrent_migrations_serialize(fresh_db):
    results: list[object] = []

    def run() -> None:
        try:
            with psycopg.connect(fresh_db) as conn:
                results.append(apply_migrations(conn))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(len(r) for r in results) == [0, 0, len(discover())]  # type: ignore[arg-type]


def test_edited_migration_is_refused(fresh_db, tmp_path):
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE IF NOT EXISTS t1 (x int);")
    with psycopg.connect(fresh_db) as conn:
        assert apply_migrations(conn, tmp_path) == ["0001_first"]
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE IF NOT EXISTS t1 (x bigint);")
        with pytest.raises(MigrationError, match=r"0001_first\.sql was edited"):
            apply_migrations(conn, tmp_path)


def test_a_comment_may_be_corrected_after_a_migration_was_applied(fresh_db, tmp_path):
    first = tmp_path / "0001_first.sql"
    first.write_text("-- first words\nCREATE TABLE IF NOT EXISTS t1 (x int, s text DEFAULT '--');\n")
    with psycopg.connect(fresh_db) as conn:
        assert apply_migrations(conn, tmp_path) == ["0001_first"]
        first.write_text(
            "-- better words\n-- on two lines\nCREATE TABLE IF NOT EXISTS t1 (x int,   s text DEFAULT '--');"
        )
        assert apply_migrations(conn, tmp_path) == []
        # a change inside a string is a statement change, not a comment
        first.write_text("CREATE TABLE IF NOT EXISTS t1 (x int, s text DEFAULT '-- x');")
        with pytest.raises(MigrationError, match=r"0001_first\.sql was edited"):
            apply_migrations(conn, tmp_path)


def test_a_database_migrated_with_whole_file_checksums_is_accepted_and_updated(fresh_db):
    from events_pipeline.common.migrations import _LEGACY_FILE_CHECKSUMS

    with psycopg.connect(fresh_db) as conn:
        apply_migrations(conn)
        # as recorded by the releases that hashed whole files (comments included)
        for version, checksum in _LEGACY_FILE_CHECKSUMS.items():
            conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = %s", (checksum, version))
        assert apply_migrations(conn) == []
        recorded = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
    assert recorded == {m.version: m.checksum for m in discover()}


def test_failed_migration_rolls_back_and_names_the_file(fresh_db, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE t_ok (x int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE t_half (x int); SELECT no_such_column FROM t_ok;")
    with psycopg.connect(fresh_db) as conn:
        with pytest.raises(MigrationError, match=r"0002_broken\.sql failed"):
            apply_migrations(conn, tmp_path)
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        half = conn.execute("SELECT to_regclass('t_half')").fetchone()[0]
    assert versions == ["0001_ok"]
    assert half is None


def test_rows_of_any_created_at_insert_and_move_into_new_partitions(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        apply_migrations(conn)
        old = datetime(2019, 5, 4, 12, tzinfo=UTC)
        conn.execute(
            "INSERT INTO events_log (event_type, timestamp, raw_event_data, created_at) "
            "VALUES ('pageview', %s, '{}', %s)",
            (old, old),
        )
        conn.commit()
        created = ensure_daily_partitions(conn, date(2019, 5, 4), date(2019, 5, 5))
        assert created == [partition_name(date(2019, 5, 4)), partition_name(date(2019, 5, 5))]
        assert ensure_daily_partitions(conn, date(2019, 5, 4), date(2019, 5, 5)) == []
        where = conn.execute("SELECT tableoid::regclass::text FROM events_log").fetchall()
        assert where == [("events_log_p20190504",)]
        assert date(2019, 5, 4) in existing_partitions(conn)


def test_events_db_migrate_dag_runs_twice(run_dag, migrated_db):
    for _ in range(2):
        dr = run_dag("events_db_migrate")
        assert dr.state == "success", task_states(dr)


def test_migrations_command_line_applies_and_creates_partitions(fresh_db, capsys):
    from events_pipeline.common.migrations import main

    assert main(["--dsn", fresh_db]) == 0
    assert main(["--dsn", fresh_db]) == 0
    out = capsys.readouterr().out
    assert f"applied {len(discover())} migration(s)" in out
    assert "applied 0 migration(s): none pending" in out
    assert "created 0 partition(s) of events_log: none missing" in out
