"""events_replay (contract §2.8) through ``dag.test(run_conf=...)``: bad input back through ingest.

A quarantined file (fixed) and rejected lines (all, a prefix, a range, fixed or not)
are loaded by the normal ingest path, with their provenance (original file and line)
recorded; replaying twice loads every line once; a wrong form value fails the run at
once, naming the field.
"""

from __future__ import annotations

import gzip
import logging
import threading
import uuid
from typing import Any

import orjson
import pytest

from events_pipeline.ingest import pipeline
from events_pipeline.ingest.validation import EVENT_ID_NAMESPACE
from tests.conftest import LANDING_BUCKET, task_states
from tests.integration.ingest.conftest import (
    TEST_SECRET,
    count,
    events,
    keys,
    ndjson,
    put,
    read_ndjson,
    registry,
)

T = "2026-11-27T10:00:00Z"


def _event(n: int, **changes: Any) -> dict[str, Any]:
    return {"event_type": "pv", "timestamp": T, "site_id": "acme.com", "n": n, **changes}


def _put_fix(s3: Any, key: str, body: bytes) -> None:
    """Write a fixed input outside incoming/ (gzip when the key ends in .gz)."""
    s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=gzip.compress(body) if key.endswith(".gz") else body)


def _replay(run_dag: Any, **conf: Any) -> Any:
    return run_dag("events_replay", run_conf=conf)


def _summary(dr: Any) -> dict[str, Any]:
    (ti,) = dr.get_task_instances()
    return ti.xcom_pull(task_ids="replay")


def _loaded_ns(db: Any) -> list[int]:
    return sorted(r["raw_event_data"]["n"] for r in events(db))


def _replayed(db: Any) -> list[tuple[int, int, int]]:
    return db.execute(
        "SELECT original_file_id, line, replay_file_id FROM replayed_lines ORDER BY 1, 2"
    ).fetchall()


def test_a_quarantined_file_is_replayed_after_its_fix(ingest_env: Any, db: Any, run_dag: Any) -> None:
    s3 = ingest_env
    good = ndjson([_event(1, event_id="6f1c3c2e-8a53-4c1b-9a35-2f4f3a1f0b7e"), _event(2), _event(3)])
    put(s3, "rp/a.ndjson.gz", gzip.compress(good)[:-9], gz=False)  # cut short: corrupt_gzip
    assert run_dag("events_ingest").state == "success"
    (original,) = registry(db)
    assert original["status"] == "quarantined" and count(db) == 0
    _put_fix(s3, "fixes/a.ndjson.gz", good)  # the repaired file, outside incoming/
    assert keys(s3, "fixes/") == ["fixes/a.ndjson.gz"]

    dr = _replay(run_dag, mode="quarantined_file", file_id=original["file_id"], fixed_key="fixes/a.ndjson.gz")
    assert dr.state == "success", task_states(dr)

    assert _loaded_ns(db) == [1, 2, 3]
    replay = registry(db)[1]
    assert (replay["replay_of"], replay["status"], replay["rows_loaded"]) == (
        original["file_id"],
        "processed",
        3,
    )
    assert replay["key"].startswith("replay/") and replay["processed_key"].startswith("processed/replay/")
    assert {r["file_id"] for r in events(db)} == {replay["file_id"]}
    assert _replayed(db) == [(original["file_id"], line, replay["file_id"]) for line in (1, 2, 3)]
    # an event without an id gets the one the original file would have given it (its identity + line)
    derived = uuid.uuid5(EVENT_ID_NAMESPACE, f"{LANDING_BUCKET}/{original['key']}#{original['etag']}:2")
    assert {r["raw_event_data"]["n"]: r["event_id"] for r in events(db)}[2] == str(derived)
    assert _summary(dr)["rows_loaded"] == 3
    assert keys(s3, "replay/") == []  # the replay object moved on to processed/ like any landing file


def test_rejected_lines_are_replayed_by_range_with_their_original_line_numbers(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3 = ingest_env
    lines = [
        _event(1),
        _event(2, timestamp="soon"),
        _event(3),
        _event(4, event_type=""),
        _event(5, timestamp="x"),
    ]
    put(s3, "rp/b.ndjson", ndjson(lines))
    assert run_dag("events_ingest").state == "success"
    (original,) = registry(db)
    assert [r["line"] for r in read_ndjson(s3, original["rejected_key"])] == [2, 4, 5]
    file_id = original["file_id"]

    # line 5 as it is: rejected again, in the replay's own rejected/ object, as line 5
    dr = _replay(run_dag, mode="rejected_lines", file_id=file_id, first_line=5)
    assert dr.state == "success", task_states(dr)
    replay = registry(db)[1]
    assert (replay["rows_loaded"], replay["rows_rejected"]) == (0, 1)
    assert replay["rejected_key"].startswith("rejected/replay/")
    assert [r["line"] for r in read_ndjson(s3, replay["rejected_key"])] == [5]

    # a fixed copy of the rejected lines: the lines up to 4 first (a prefix), then all
    fixed = [
        {"line": 2, "reason": "fixed", "raw": orjson.dumps(_event(2)).decode()},
        {"line": 4, "reason": "fixed", "raw": orjson.dumps(_event(4)).decode()},
        {"line": 5, "reason": "fixed", "raw": orjson.dumps(_event(5)).decode()},
    ]
    _put_fix(s3, "fixes/b.rejected.ndjson", ndjson(fixed))
    dr = _replay(
        run_dag, mode="rejected_lines", file_id=file_id, fixed_key="fixes/b.rejected.ndjson", last_line=4
    )
    assert dr.state == "success", task_states(dr)
    assert _loaded_ns(db) == [1, 2, 3, 4]
    dr = _replay(run_dag, mode="rejected_lines", file_id=file_id, fixed_key="fixes/b.rejected.ndjson")
    assert dr.state == "success", task_states(dr)
    assert _loaded_ns(db) == [1, 2, 3, 4, 5]
    assert [line for _, line, _ in _replayed(db)] == [2, 4, 5]
    assert {orig for orig, _, _ in _replayed(db)} == {file_id}


def test_replaying_twice_loads_every_line_once(ingest_env: Any, db: Any, run_dag: Any) -> None:
    s3 = ingest_env
    put(s3, "rp/c.ndjson", ndjson([_event(1), _event(2, timestamp=1.5e30), _event(3, event_type="")]))
    assert run_dag("events_ingest").state == "success"
    (original,) = registry(db)
    _put_fix(
        s3,
        "fixes/c.rejected.ndjson",
        ndjson([{"line": n, "raw": orjson.dumps(_event(n)).decode()} for n in (2, 3)]),
    )
    conf = {"mode": "rejected_lines", "file_id": original["file_id"], "fixed_key": "fixes/c.rejected.ndjson"}
    first, second = _replay(run_dag, **conf), _replay(run_dag, **conf)
    assert (first.state, second.state) == ("success", "success")
    assert _loaded_ns(db) == [1, 2, 3]
    assert (_summary(first)["rows_loaded"], _summary(second)["rows_loaded"]) == (2, 0)
    # billing counts each event received once
    assert db.execute("SELECT sum(rows_loaded) FROM ingest_counts").fetchone()[0] == 3


def test_two_replays_racing_on_the_same_lines_load_them_once(
    ingest_env: Any, db: Any, migrated_db: Any, s3_server: Any
) -> None:
    """Replay B reaches its lines while replay A's load transaction holds them: B waits, then leaves them."""
    import boto3
    import psycopg

    from events_pipeline.common import failpoints

    s3 = ingest_env
    body = ndjson([_event(1), _event(2)])
    original_id = db.execute(
        "INSERT INTO landing_files (bucket, key, etag, status, moved_at, processed_key) "
        "VALUES (%s, 'incoming/rp/d.ndjson', 'e0', 'quarantined', now(), 'quarantine/rp/d.ndjson') "
        "RETURNING file_id",
        (LANDING_BUCKET,),
    ).fetchone()[0]
    claims = []
    for name in ("a", "b"):
        key = f"replay/{name}/rp/d.ndjson"
        s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=body)
        etag = s3.head_object(Bucket=LANDING_BUCKET, Key=key)["ETag"].strip('"')
        row = db.execute(
            "INSERT INTO landing_files (bucket, key, etag, size_bytes, status, claimed_by, claimed_at, "
            "lease_expires_at, attempts, replay_of) VALUES (%s, %s, %s, %s, 'claimed', %s, now(), "
            "now() + interval '30 minutes', 0, %s) "
            "RETURNING file_id, key, etag, size_bytes, status, attempts",
            (LANDING_BUCKET, key, etag, len(body), name, original_id),
        ).fetchone()
        claims.append(pipeline.Claim(*row, token=name))

    dsn, endpoint = migrated_db.dsn("events"), s3_server.endpoint_url
    b_started = threading.Event()
    results: dict[str, Any] = {}

    def hold_a_until_b_waits(key: str) -> None:
        if not key.startswith("replay/a/"):
            return
        b_started.set()
        with psycopg.connect(dsn, autocommit=True) as watcher:
            for _ in range(600):  # B's insert waits on A's uncommitted rows
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%%INSERT INTO replayed_lines%%'"
                ).fetchone()[0]
                if waiting:
                    return
                threading.Event().wait(0.05)
        raise AssertionError("replay B never waited for replay A")

    def load(claim: Any) -> None:
        if claim.token == "b":
            assert b_started.wait(60)
        client = boto3.client("s3", endpoint_url=endpoint)
        with psycopg.connect(dsn, autocommit=True) as conn:
            results[claim.token] = pipeline.process_claim(
                conn,
                client,
                LANDING_BUCKET,
                claim,
                lease_minutes=30,
                max_attempts=5,
                secret=lambda: TEST_SECRET,
            )

    with failpoints.inject("before_commit", hold_a_until_b_waits):
        threads = [threading.Thread(target=load, args=(c,)) for c in claims]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert (results["a"].rows_loaded, results["b"].rows_loaded) == (2, 0)
    assert count(db) == 2
    assert [line for _, line, _ in _replayed(db)] == [1, 2]


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"mode": "rejected_lines"}, "form field 'file_id' is required"),
        ({"file_id": 999}, "form field 'file_id' = 999: no landing file has that file_id"),
        (
            {"mode": "quarantined_file", "file_id": "{quarantined}", "first_line": 3},
            "form field 'first_line' is set",
        ),
        ({"file_id": "{loaded}", "first_line": 5, "last_line": 2}, "form field 'last_line' = 2 is before"),
        (
            {"file_id": "{loaded}", "fixed_key": "incoming/x.ndjson"},
            "form field 'fixed_key' = 'incoming/x.ndjson'",
        ),
        ({"mode": "quarantined_file", "file_id": "{loaded}"}, "is processed, not quarantined"),
        ({"file_id": "{loaded}", "first_line": 3, "last_line": 3}, "select none of the 1 rejected line(s)"),
        (
            {"file_id": "{loaded}", "fixed_key": "fixes/missing.ndjson"},
            "fixed_key' s3://test-landing/fixes/missing",
        ),
    ],
)
def test_a_wrong_form_value_fails_the_run_at_once_naming_the_field(
    ingest_env: Any, db: Any, run_dag: Any, caplog: pytest.LogCaptureFixture, conf: dict, message: str
) -> None:
    s3 = ingest_env
    put(s3, "rp/ok.ndjson", ndjson([_event(1), _event(2, event_type="")]))
    put(s3, "rp/bad.ndjson.gz", b"not gzip", gz=False)
    assert run_dag("events_ingest").state == "success"
    ids = {r["key"].rsplit("/", 1)[-1]: r["file_id"] for r in registry(db)}
    values = {"{loaded}": ids["ok.ndjson"], "{quarantined}": ids["bad.ndjson.gz"]}
    conf = {k: values.get(v, v) if isinstance(v, str) else v for k, v in conf.items()}
    caplog.set_level(logging.ERROR)

    dr = _replay(run_dag, **conf)

    assert dr.state == "failed"
    (ti,) = dr.get_task_instances()
    assert ti.try_number == 1  # not retried: no retry can fix a form value
    assert any(message in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert len(registry(db)) == 2 and count(db) == 1  # nothing replayed


@pytest.mark.parametrize(("field", "value"), [("file_id", 0), ("file_id", "abc"), ("mode", "everything")])
def test_a_value_the_form_schema_refuses_is_refused_before_the_run(
    ingest_env: Any, run_dag: Any, field: str, value: Any
) -> None:
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=field):
        _replay(run_dag, **{field: value})
