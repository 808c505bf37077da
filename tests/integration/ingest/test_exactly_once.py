"""Exactly once under crashes, retries and concurrent runs (real PostgreSQL and S3 server)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.demo_data import iter_events
from events_pipeline.common import failpoints as ingest_faults
from events_pipeline.ingest import pipeline
from tests.conftest import LANDING_BUCKET, task_states
from tests.integration.ingest.conftest import TEST_SECRET, count, keys, ndjson, put, registry

START = datetime(2026, 11, 27, 11, tzinfo=UTC)


class SimulatedCrashError(RuntimeError):
    """Raised at a checkpoint to simulate a worker dying there."""


def _run_together(*calls: Any, timeout: float = 60) -> None:
    """Run each callable in its own thread at the same time; fail if one has not finished in time."""
    threads = [threading.Thread(target=call) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not [t for t in threads if t.is_alive()], "a concurrent loader did not finish"


def _crash_once() -> Any:
    state = {"fired": 0}

    def hook(key: str) -> None:
        if not state["fired"]:
            state["fired"] += 1
            raise SimulatedCrashError(f"simulated crash at {key}")

    return hook, state


def _crash_always(key: str) -> None:
    raise SimulatedCrashError(f"simulated crash at {key}")


def _files(s3: Any, n: int = 3, per_file: int = 4) -> int:
    for i in range(n):
        put(s3, f"crash/f{i}.ndjson.gz", ndjson(list(iter_events(per_file, start=START, seed=10 + i))))
    return n * per_file


def _assert_exactly_once(db: Any, s3: Any, expected_rows: int, files: int) -> None:
    assert count(db) == expected_rows
    assert db.execute("SELECT count(DISTINCT event_id) FROM events_log").fetchone()[0] == expected_rows
    assert db.execute("SELECT sum(rows_loaded) FROM ingest_counts").fetchone()[0] == expected_rows
    reg = registry(db)
    assert [r["status"] for r in reg] == ["processed"] * files
    assert keys(s3, "incoming/") == []
    assert len(keys(s3, "processed/")) == files


@pytest.mark.parametrize("point", ingest_faults.POINTS)
def test_crash_then_airflow_retry_loads_exactly_once(
    point: str, ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3 = ingest_env
    expected = _files(s3)
    hook, state = _crash_once()
    with ingest_faults.inject(point, hook):
        dr = run_dag("events_ingest")
    assert state["fired"] == 1
    assert dr.state == "success", task_states(dr)
    _assert_exactly_once(db, s3, expected, 3)


@pytest.mark.parametrize("point", ["before_commit", "during_move"])
def test_worker_dies_then_next_run_takes_over_after_the_lease(
    point: str, ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3 = ingest_env
    expected = _files(s3, n=2)
    with ingest_faults.inject(point, _crash_always):
        dr = run_dag("events_ingest")
    assert dr.state == "failed"
    reg = registry(db)
    assert all(r["error"] and "simulated crash" in r["error"] for r in reg)
    if point == "before_commit":
        assert count(db) == 0 and {r["status"] for r in reg} == {"claimed"}
    else:  # committed, copied to processed/, not yet deleted from incoming/
        assert count(db) == expected and {r["status"] for r in reg} == {"loaded"}
        assert len(keys(s3, "incoming/")) == 2 and len(keys(s3, "processed/")) == 2

    # a run before the lease expires leaves the files alone
    assert run_dag("events_ingest").state == "success"
    assert {r["status"] for r in registry(db)} == {reg[0]["status"]}

    db.execute("UPDATE landing_files SET lease_expires_at = now() - interval '1 second'")
    assert run_dag("events_ingest").state == "success"
    _assert_exactly_once(db, s3, expected, 2)
    # attempts counts the claims under which a load started: the crashed claim and, for a
    # file that had not committed, the take-over's (Airflow's retries of one claim count once)
    assert {r["attempts"] for r in registry(db)} == ({2} if point == "before_commit" else {1})


def _worker(dsn: str, endpoint: str, name: str, out: dict[str, Any], barrier: threading.Barrier) -> None:
    import boto3
    import psycopg

    client = boto3.client("s3", endpoint_url=endpoint)
    with psycopg.connect(dsn, autocommit=True) as conn:
        token = pipeline.new_token(name)
        barrier.wait()
        claims = pipeline.claim_available(conn, client, LANDING_BUCKET, token, max_files=50, lease_minutes=30)
        results = [
            pipeline.process_claim(
                conn, client, LANDING_BUCKET, c, lease_minutes=30, max_attempts=5, secret=lambda: TEST_SECRET
            )
            for c in claims
        ]
    out[name] = results


def test_two_concurrent_runs_never_load_a_file_twice(
    ingest_env: Any, db: Any, migrated_db: Any, s3_server: Any
) -> None:
    s3 = ingest_env
    expected = _files(s3, n=8, per_file=5)
    out: dict[str, Any] = {}
    barrier = threading.Barrier(2)
    dsn, endpoint = migrated_db.dsn("events"), s3_server.endpoint_url
    _run_together(*(lambda n=n: _worker(dsn, endpoint, n, out, barrier) for n in ("run-a", "run-b")))
    loaded = [r.key for rs in out.values() for r in rs if r.outcome == pipeline.LOADED]
    assert sorted(loaded) == sorted(f"incoming/crash/f{i}.ndjson.gz" for i in range(8))
    _assert_exactly_once(db, s3, expected, 8)


def test_two_loaders_holding_the_same_file_load_it_once(
    ingest_env: Any, db: Any, migrated_db: Any, s3_server: Any
) -> None:
    """Run A's lease expired and run B took the file over while A is still about to load it."""
    import boto3
    import psycopg

    s3 = ingest_env
    expected = _files(s3, n=1, per_file=50)
    dsn = migrated_db.dsn("events")
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        (claim_a,) = pipeline.claim_available(
            conn, client, LANDING_BUCKET, "a", max_files=5, lease_minutes=30
        )
        conn.execute("UPDATE landing_files SET lease_expires_at = now() - interval '1 second'")
        (claim_b,) = pipeline.claim_available(
            conn, client, LANDING_BUCKET, "b", max_files=5, lease_minutes=30
        )
    assert claim_a.file_id == claim_b.file_id

    results: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def load(claim: Any) -> None:
        c3 = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            barrier.wait()
            results[claim.token] = pipeline.process_claim(
                conn, c3, LANDING_BUCKET, claim, lease_minutes=30, max_attempts=5, secret=lambda: TEST_SECRET
            )

    _run_together(lambda: load(claim_a), lambda: load(claim_b))
    assert results["a"].outcome == pipeline.SKIPPED
    assert results["b"].outcome == pipeline.LOADED
    _assert_exactly_once(db, s3, expected, 1)


def test_zombie_and_retry_of_the_same_claim_load_once(
    ingest_env: Any, db: Any, migrated_db: Any, s3_server: Any
) -> None:
    """Two attempts with the SAME claim token (a zombie task and its retry) race on the row lock."""
    import boto3
    import psycopg

    s3 = ingest_env
    expected = _files(s3, n=1, per_file=200)
    dsn = migrated_db.dsn("events")
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        (claim,) = pipeline.claim_available(conn, client, LANDING_BUCKET, "z", max_files=5, lease_minutes=30)

    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def load() -> None:
        c3 = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            barrier.wait()
            result = pipeline.load_claimed_file(conn, c3, LANDING_BUCKET, claim, lease_minutes=30)
            outcomes.append(result.outcome)

    _run_together(load, load)
    assert sorted(outcomes) == [pipeline.LOADED, pipeline.SKIPPED]
    assert count(db) == expected
    assert registry(db)[0]["status"] == "loaded"


def test_a_line_postgresql_refuses_is_rejected_and_the_rest_loads(
    ingest_env: Any, db: Any, migrated_db: Any, s3_server: Any
) -> None:
    """A value our rules accept but the database refuses (here: a CHECK added for the test)."""
    import boto3
    import psycopg

    from tests.integration.ingest.conftest import read_ndjson

    s3 = ingest_env
    lines = [
        {"event_type": "ok", "timestamp": "2026-11-27T10:00:00Z", "n": 1},
        {"event_type": "refused", "timestamp": "2026-11-27T10:00:01Z", "n": 2},
        {"event_type": "ok", "timestamp": "2026-11-27T10:00:02Z", "n": 3},
    ]
    put(s3, "refused/a.ndjson", ndjson(lines))
    db.execute("ALTER TABLE events_log ADD CONSTRAINT test_refuse CHECK (event_type <> 'refused')")
    try:
        client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
        with psycopg.connect(migrated_db.dsn("events"), autocommit=True) as conn:
            (claim,) = pipeline.claim_available(
                conn, client, LANDING_BUCKET, "r", max_files=5, lease_minutes=30
            )
            result = pipeline.process_claim(
                conn,
                client,
                LANDING_BUCKET,
                claim,
                lease_minutes=30,
                max_attempts=5,
                secret=lambda: TEST_SECRET,
            )
    finally:
        db.execute("ALTER TABLE events_log DROP CONSTRAINT test_refuse")
    assert (result.outcome, result.rows_loaded, result.rows_rejected) == (pipeline.LOADED, 2, 1)
    assert count(db) == 2
    (rejected,) = read_ndjson(s3, f"rejected/refused/a.f{claim.file_id}.ndjson.rejected.ndjson")
    assert rejected["line"] == 2 and "refused by PostgreSQL" in rejected["reason"]
    assert '"refused"' in rejected["raw"]


def test_quarantine_move_interrupted_is_finished_by_the_next_run(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3 = ingest_env
    put(s3, "qcrash/bad.ndjson.gz", b"not gzip", gz=False)
    with ingest_faults.inject("during_move", _crash_always):
        assert run_dag("events_ingest").state == "failed"
    (row,) = registry(db)
    assert row["status"] == "quarantined" and row["moved_at"] is None
    assert keys(s3, "incoming/") == ["incoming/qcrash/bad.ndjson.gz"]

    db.execute("UPDATE landing_files SET lease_expires_at = now() - interval '1 second'")
    assert run_dag("events_ingest").state == "success"
    (row,) = registry(db)
    assert row["status"] == "quarantined" and row["moved_at"] is not None
    assert keys(s3, "incoming/") == []
    assert keys(s3, "quarantine/") == [
        "quarantine/qcrash/bad.ndjson.gz",
        "quarantine/qcrash/bad.ndjson.gz.error.json",
    ]


def test_a_background_move_that_fails_leaves_only_that_file_to_the_retry(
    ingest_env: Any, db: Any, migrated_db: Any, s3_server: Any
) -> None:
    """load_claims moves each file while loading the next: a move cut short fails that file alone."""
    import boto3
    import psycopg

    s3 = ingest_env
    expected = _files(s3, n=3)
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)

    def crash_on_second(key: str) -> None:
        if key.endswith("f1.ndjson.gz"):
            raise SimulatedCrashError(f"simulated crash at {key}")

    with psycopg.connect(migrated_db.dsn("events"), autocommit=True) as conn:
        claims = pipeline.claim_available(conn, client, LANDING_BUCKET, "bg", max_files=5, lease_minutes=30)
        with ingest_faults.inject("during_move", crash_on_second):
            results = pipeline.load_claims(
                conn,
                client,
                LANDING_BUCKET,
                claims,
                lease_minutes=30,
                max_attempts=5,
                secret=lambda: TEST_SECRET,
            )
        assert [r.outcome for r in results] == [pipeline.LOADED, pipeline.FAILED, pipeline.LOADED]
        assert "simulated crash" in (results[1].detail or "")
        assert [r.dest_key for r in results] == [
            f"processed/crash/f0.f{claims[0].file_id}.ndjson.gz",
            None,
            f"processed/crash/f2.f{claims[2].file_id}.ndjson.gz",
        ]
        assert all(r.move is None for r in results)
        assert [r["status"] for r in registry(db)] == ["processed", "loaded", "processed"]
        assert count(db) == expected  # every file's rows committed, the failed move's included

        # the retry (same claims, as Airflow's retry of the task) moves f1 without loading it again
        retry = pipeline.load_claims(
            conn, client, LANDING_BUCKET, claims, lease_minutes=30, max_attempts=5, secret=lambda: TEST_SECRET
        )
    assert [r.outcome for r in retry] == [pipeline.SKIPPED, pipeline.MOVED_ONLY, pipeline.SKIPPED]
    _assert_exactly_once(db, s3, expected, 3)
