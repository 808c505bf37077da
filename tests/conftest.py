"""Shared fixtures: the test run starts its own PostgreSQL and S3 server.

Airflow reads its configuration at import time, so the environment is set up
here, before any test module imports Airflow: a throw-away AIRFLOW_HOME with a
SQLite metadata database, this repo's dags/ and plugins/, and connections and
Variables from ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*``.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_RUN_DIR = Path(tempfile.mkdtemp(prefix="events-pipeline-tests-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_RUN_DIR / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_RUN_DIR / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Far enough back that tests can run (backfill) any day they construct.
        "EVENTS_PIPELINE_START_DATE": "2025-01-01",
        "AIRFLOW_VAR_EVENTS_LANDING_BUCKET": "test-landing",
        "AIRFLOW_VAR_EVENTS_BACKUP_BUCKET": "test-backup",
        "AIRFLOW_VAR_EVENTS_IP_HASH_SECRET": "test-ip-hash-secret-of-at-least-32-bytes",
        "AWS_ACCESS_KEY_ID": "local-access-key",
        "AWS_SECRET_ACCESS_KEY": "local-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
(_RUN_DIR / "airflow").mkdir(parents=True, exist_ok=True)
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from devtools import devstack  # noqa: E402

LANDING_BUCKET = "test-landing"
BACKUP_BUCKET = "test-backup"


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    """The session's scratch folder (removed at the end)."""
    yield _RUN_DIR
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(run_dir: Path) -> Iterator[devstack.PostgresInstance]:
    """An embedded PostgreSQL for the session, with an ``events`` database.

    Its data folder sits under a dedicated parent (pgserver opens parents to
    other users when run as root).
    """
    instance = devstack.start_postgres(run_dir / "pg" / "data")
    instance.create_database("events")
    os.environ["AIRFLOW_CONN_EVENTS_DB"] = instance.airflow_uri("events")
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[devstack.S3Instance]:
    """moto's S3 server on 127.0.0.1, reached through ``aws_default``."""
    instance = devstack.start_s3()
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = devstack.aws_connection_json(instance.endpoint_url)
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def airflow_db(run_dir: Path) -> None:
    """Initialise Airflow's metadata database (SQLite) once per session."""
    from airflow.utils import db

    db.initdb()


@pytest.fixture(scope="session")
def migrated_db(postgres: devstack.PostgresInstance) -> devstack.PostgresInstance:
    """The events database with every migration applied and partitions around today."""
    import psycopg

    from events_pipeline.common.migrations import apply_migrations
    from events_pipeline.common.partitions import ensure_partitions_around

    with psycopg.connect(postgres.dsn("events")) as conn:
        apply_migrations(conn)
        ensure_partitions_around(conn)
    return postgres


@pytest.fixture
def db(migrated_db: devstack.PostgresInstance) -> Iterator[object]:
    """An autocommit psycopg connection to the migrated events database.

    Tests that write rows clean them up through :func:`clean_tables`.
    """
    import psycopg

    with psycopg.connect(migrated_db.dsn("events"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def clean_tables(db: object) -> Iterator[None]:
    """Empty every pipeline table before and after the test."""
    _truncate(db)
    yield
    _truncate(db)


def _truncate(conn: object) -> None:
    conn.execute(  # type: ignore[attr-defined]
        "TRUNCATE events_log, landing_files, ingest_counts, export_runs, export_spaces, billing_daily, "
        "gdpr_erasure_requests, client_domains, clients RESTART IDENTITY CASCADE"
    )


@pytest.fixture
def s3(s3_server: devstack.S3Instance) -> Iterator[object]:
    """A boto3 client on the S3 server with empty landing and backup buckets.

    Every bucket is emptied and deleted after the test.
    """
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    devstack.create_buckets(s3_server.endpoint_url, [LANDING_BUCKET, BACKUP_BUCKET])
    yield client
    for bucket in client.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)


@pytest.fixture
def services(airflow_db: None, migrated_db: object, s3_server: object) -> None:
    """Everything a ``dag.test()`` run needs: Airflow DB, events DB, S3 server."""


@pytest.fixture(scope="session")
def dagbag(airflow_db: None) -> object:
    """The DagBag of this repo's ``dags/`` folder, parsed once per session."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture
def run_dag(services: None, dagbag: object):
    """Run a DAG of ``dags/`` once with ``dag.test()`` and return its DagRun.

    Call as ``run_dag("events_export", logical_date=datetime(...))``. Retries
    are kept but their delay is cut to zero so failing runs end quickly.
    """
    from datetime import timedelta

    def _run(dag_id: str, **kwargs: object) -> object:
        dag = dagbag.dags[dag_id]  # type: ignore[attr-defined]
        saved = [(t, t.retry_delay, t.max_retry_delay, t.retry_exponential_backoff) for t in dag.tasks]
        # dag.test(run_conf=...) writes the conf into the shared DAG's params: restore them after
        saved_params = copy.deepcopy(dag.params), [(t, copy.deepcopy(t.params)) for t in dag.tasks]
        for task in dag.tasks:
            task.retry_delay = timedelta(seconds=0)
            task.max_retry_delay = timedelta(seconds=0)
            task.retry_exponential_backoff = 0
        # Airflow 3.3.2's dag.test() keeps the deadline alert definitions where the finished
        # run expects their database ids and fails; deadlines are tested on their own
        # (tests/dags, tests/integration/health/test_deadline_alerts.py).
        saved_deadline, dag.deadline = dag.deadline, None
        try:
            return dag.test(**kwargs)
        finally:
            # The DagBag is shared by the session (integrity tests read it too).
            dag.deadline = saved_deadline
            dag.params = saved_params[0]
            for task, params in saved_params[1]:
                task.params = params
            for task, delay, max_delay, backoff in saved:
                task.retry_delay = delay
                task.max_retry_delay = max_delay
                task.retry_exponential_backoff = backoff

    return _run


def task_states(dag_run: object) -> dict[str, str]:
    """Map ``task_id`` (with ``[map_index]`` for mapped ones) to its final state."""
    out = {}
    for ti in dag_run.get_task_instances():  # type: ignore[attr-defined]
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        out[key] = str(ti.state)
    return out
