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
