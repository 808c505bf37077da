"""Bad settings fail with one clear line naming the connection, Variable or bucket."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from devtools import devstack
from events_pipeline.common.db import connect
from events_pipeline.common.errors import ServiceUnreachableError, SettingError
from events_pipeline.common.s3 import check_bucket, s3_client
from tests.conftest import LANDING_BUCKET, task_states


def test_events_db_connection_reaches_postgres(migrated_db) -> None:
    with connect() as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 1


def test_missing_events_db_connection_names_it(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_EVENTS_DB", raising=False)
    with pytest.raises(SettingError, match=r"'events_db' is not defined.*AIRFLOW_CONN_EVENTS_DB"), connect():
        pass


def test_unreachable_postgres_names_the_connection(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_BROKEN_DB", f"postgres://postgres@{str(tmp_path).replace('/', '%2F')}/events"
    )
    with pytest.raises(ServiceUnreachableError, match="'broken_db'"), connect("broken_db"):
        pass


def test_s3_server_is_reached_through_aws_default(s3) -> None:
    client = s3_client()
    client.put_object(Bucket=LANDING_BUCKET, Key="incoming/probe.ndjson", Body=b"{}\n")
    names = [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert LANDING_BUCKET in names
    check_bucket(client, LANDING_BUCKET, what="Variable events_landing_bucket")


def test_missing_bucket_names_bucket_and_setting(s3) -> None:
    with pytest.raises(
        SettingError, match=r"'no-such-bucket' \(Variable events_landing_bucket\) does not exist"
    ):
        check_bucket(s3_client(), "no-such-bucket", what="Variable events_landing_bucket")


def test_unreachable_s3_endpoint_names_bucket_and_connection(monkeypatch) -> None:
    dead = f"http://127.0.0.1:{devstack.free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_S3", devstack.aws_connection_json(dead))
    client = s3_client("dead_s3")
    client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(ServiceUnreachableError, match=r"'landing'.*'dead_s3'"):
        check_bucket(client, "landing", what="Variable events_landing_bucket", conn_id="dead_s3")


def test_migrate_dag_without_events_db_fails_with_one_clear_line(run_dag, monkeypatch, caplog) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_EVENTS_DB", raising=False)
    with caplog.at_level(logging.ERROR):
        dr = run_dag("events_db_migrate", logical_date=datetime(2026, 11, 27, tzinfo=UTC))
    assert dr.state == "failed", task_states(dr)
    lines = [r.getMessage() for r in caplog.records if "FAILED dag=events_db_migrate" in r.getMessage()]
    assert lines, [r.getMessage() for r in caplog.records][-10:]
    assert "SettingError" in lines[-1] and "'events_db' is not defined" in lines[-1]


# ------------------------------------------- through whole DAG runs: fail on try 1, name it

#: A logical date whose intervals fall inside the test run's partitions and start date.
LOGICAL_DATE = datetime(2026, 11, 27, 5, tzinfo=UTC)


def _failed_tries(dag_run: object) -> dict[str, int]:
    """Map each failed task (``task[map_index]``) to the try it failed on."""
    return {
        f"{ti.task_id}[{ti.map_index}]": ti.try_number
        for ti in dag_run.get_task_instances()  # type: ignore[attr-defined]
        if str(ti.state) == "failed"
    }


def _oncall_lines(caplog: pytest.LogCaptureFixture, dag_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"FAILED dag={dag_id} " in r.getMessage()]


def _assert_fails_once_naming(dag_run: object, lines: list[str], *names: str) -> None:
    """The run failed, every failed task on its first try, each on-call line naming ``names``."""
    assert dag_run.state == "failed", task_states(dag_run)  # type: ignore[attr-defined]
    failed = _failed_tries(dag_run)
    assert failed, task_states(dag_run)
    assert set(failed.values()) == {1}, f"retried instead of failing at once: {failed}"
    assert lines, "no on-call FAILED line was logged"
    for line in lines:
        assert "try=1 " in line, line
        for name in names:
            assert name in line, line


@pytest.mark.parametrize(
    "dag_id",
    [
        "events_db_migrate",
        "events_ingest",
        "events_export",
        "events_billing",
        "events_maintenance",
        "events_gdpr_erasure",
        "events_health",
    ],
)
def test_dag_run_without_events_db_fails_on_first_try_naming_it(
    dag_id: str, run_dag, s3, monkeypatch, caplog
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_EVENTS_DB", raising=False)
    with caplog.at_level(logging.ERROR):
        dr = run_dag(dag_id, logical_date=LOGICAL_DATE)
    _assert_fails_once_naming(
        dr, _oncall_lines(caplog, dag_id), "'events_db' is not defined", "AIRFLOW_CONN_EVENTS_DB"
    )


@pytest.mark.parametrize(
    ("dag_id", "variable"),
    [
        ("events_ingest", "events_landing_bucket"),
        ("events_gdpr_erasure", "events_backup_bucket"),
    ],
)
def test_dag_run_without_a_required_variable_fails_on_first_try_naming_it(
    dag_id: str, variable: str, run_dag, s3, monkeypatch, caplog
) -> None:
    monkeypatch.delenv(f"AIRFLOW_VAR_{variable.upper()}", raising=False)
    with caplog.at_level(logging.ERROR):
        dr = run_dag(dag_id, logical_date=LOGICAL_DATE)
    _assert_fails_once_naming(
        dr,
        _oncall_lines(caplog, dag_id),
        f"Variable {variable!r} is not set",
        f"AIRFLOW_VAR_{variable.upper()}",
    )


def test_dag_run_without_aws_default_fails_on_first_try_naming_it(run_dag, s3, monkeypatch, caplog) -> None:
    """Without the check the AWS hook would silently use real AWS and retry for minutes."""
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    with caplog.at_level(logging.ERROR):
        dr = run_dag("events_ingest", logical_date=LOGICAL_DATE)
    _assert_fails_once_naming(
        dr, _oncall_lines(caplog, "events_ingest"), "'aws_default' is not defined", "AIRFLOW_CONN_AWS_DEFAULT"
    )


def test_client_export_connection_missing_fails_on_first_try_naming_it(
    run_dag, s3, db, clean_tables, caplog
) -> None:
    s3.create_bucket(Bucket="acme-analytics")
    db.execute(
        "INSERT INTO clients (client_id, name, export_bucket, export_prefix, export_conn_id) "
        "VALUES ('acme', 'Acme', 'acme-analytics', 'events/acme', 'acme_bucket')"
    )
    with caplog.at_level(logging.ERROR):
        dr = run_dag("events_export", logical_date=LOGICAL_DATE)
    _assert_fails_once_naming(
        dr, _oncall_lines(caplog, "events_export"), "'acme_bucket' is not defined", "AIRFLOW_CONN_ACME_BUCKET"
    )


def test_migration_refused_fails_the_migrate_dag_on_first_try(run_dag, migrated_db, db, caplog) -> None:
    """An applied migration whose recorded checksum no longer matches: MigrationError, not retried."""
    (version, checksum) = db.execute(
        "SELECT version, checksum FROM schema_migrations ORDER BY version LIMIT 1"
    ).fetchone()
    db.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = %s", (version,))
    try:
        with caplog.at_level(logging.ERROR):
            dr = run_dag("events_db_migrate", logical_date=LOGICAL_DATE)
    finally:
        db.execute("UPDATE schema_migrations SET checksum = %s WHERE version = %s", (checksum, version))
    _assert_fails_once_naming(
        dr, _oncall_lines(caplog, "events_db_migrate"), "MigrationError", f"{version}.sql was edited"
    )
