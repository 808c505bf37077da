"""Waiting is not failing (contract §2.6 ``repeated_failure``): only loads that started count.

A claim taken over because its lease expired while the file only waited (a backlog,
a batch behind a file that killed its worker) is no attempt; a load that started and
never finished is one, and after ``events_ingest_max_attempts`` of them the file is
quarantined instead of being retried for ever.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from devtools.demo_data import iter_events
from events_pipeline.common import failpoints
from events_pipeline.ingest import pipeline
from tests.conftest import LANDING_BUCKET
from tests.integration.ingest.conftest import TEST_SECRET, count, ndjson, put, registry

MAX_ATTEMPTS = 3


class WorkerDiedError(RuntimeError):
    """Raised inside the load transaction: the worker died mid-load."""


def _expire(db: Any) -> None:
    db.execute("UPDATE landing_files SET lease_expires_at = now() - interval '1 second'")


def _claim(conn: Any, client: Any, token: str) -> Any:
    (claim,) = pipeline.claim_available(conn, client, LANDING_BUCKET, token, max_files=5, lease_minutes=30)
    return claim


def _process(conn: Any, client: Any, claim: Any) -> Any:
    return pipeline.process_claim(
        conn,
        client,
        LANDING_BUCKET,
        claim,
        lease_minutes=30,
        max_attempts=MAX_ATTEMPTS,
        secret=lambda: TEST_SECRET,
    )


@pytest.fixture
def loader(ingest_env: Any, migrated_db: Any, s3_server: Any) -> Any:
    """An autocommit connection and an S3 client, as a load_batch task has them."""
    import boto3
    import psycopg

    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    with psycopg.connect(migrated_db.dsn("events"), autocommit=True) as conn:
        yield conn, client


def test_a_claim_taken_over_many_times_without_starting_is_never_quarantined(loader: Any, db: Any) -> None:
    conn, client = loader
    put(client, "wait/a.ndjson", ndjson(list(iter_events(5, seed=1))))
    for i in range(3 * MAX_ATTEMPTS):  # runs that claimed it, then never got to load it
        claim = _claim(conn, client, f"run-{i}")
        assert claim.attempts == 0
        _expire(db)
    claim = _claim(conn, client, "run-that-loads")
    result = _process(conn, client, claim)
    assert result.outcome == pipeline.LOADED and count(db) == 5
    (row,) = registry(db)
    assert (row["status"], row["attempts"]) == ("processed", 1)


def test_a_file_whose_loads_start_and_die_is_quarantined_after_max_attempts(loader: Any, db: Any) -> None:
    conn, client = loader
    put(client, "die/a.ndjson", ndjson(list(iter_events(5, seed=2))))

    def die(key: str) -> None:
        raise WorkerDiedError(f"worker died loading {key}")

    for i in range(MAX_ATTEMPTS):
        claim = _claim(conn, client, f"run-{i}")
        with failpoints.inject("before_commit", die), pytest.raises(WorkerDiedError):
            _process(conn, client, claim)
        # an Airflow retry of the same claim is the same attempt
        with failpoints.inject("before_commit", die), pytest.raises(WorkerDiedError):
            _process(conn, client, claim)
        assert registry(db)[0]["attempts"] == i + 1
        _expire(db)
    result = _process(conn, client, _claim(conn, client, "run-last"))
    assert result.outcome == pipeline.QUARANTINED
    (row,) = registry(db)
    error = orjson.loads(row["error"])
    assert error["kind"] == "repeated_failure" and f"{MAX_ATTEMPTS} attempts" in error["detail"]
    assert count(db) == 0
