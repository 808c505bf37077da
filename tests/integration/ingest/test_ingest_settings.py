"""Through the real DAG: the settings every load needs (contract §4.3) and the per-file limits (§2.4-§2.6).

- a pseudonym key shorter than 32 bytes fails the run at once, before any file is claimed;
- timestamps outside the plausible window are rejected, naming the field and the window;
- a file over ``events_ingest_max_file_bytes`` / ``events_ingest_max_file_rows`` is quarantined;
- a line longer than the line limit is one rejected line, the rest of the file loads.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from events_pipeline.ingest import file_readers
from tests.conftest import task_states
from tests.integration.ingest.conftest import count, events, keys, ndjson, put, read_ndjson, registry


def _event(n: int, timestamp: Any = "2026-11-27T10:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"event_type": "pv", "timestamp": timestamp, "site_id": "globex.de", "n": n, **extra}


def test_a_short_pseudonym_key_fails_at_once_before_any_file_is_claimed(
    ingest_env: Any, db: Any, run_dag: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_IP_HASH_SECRET", "only-31-bytes-long-0123456789ab")
    put(ingest_env, "secret/a.ndjson", ndjson([_event(1, ip_address="203.0.113.7")]))
    caplog.set_level(logging.ERROR)
    dr = run_dag("events_ingest")
    assert dr.state == "failed"
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    assert str(tis["claim_files"].state) == "failed" and tis["claim_files"].try_number == 1  # no retry
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "'events_ip_hash_secret' is 31 bytes long" in messages and "token_hex(32)" in messages
    # nothing claimed, nothing quarantined: the file waits in incoming/ for the fix
    assert registry(db) == [] and keys(ingest_env, "incoming/") == ["incoming/secret/a.ndjson"]

    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_IP_HASH_SECRET", "now-a-key-of-32-bytes-0123456789")
    assert run_dag("events_ingest").state == "success"
    assert count(db) == 1


def test_timestamps_outside_the_plausible_window_are_rejected(ingest_env: Any, db: Any, run_dag: Any) -> None:
    now = datetime.now(UTC)
    lines = [
        _event(1, "1999-12-31T23:59:59Z"),
        _event(2, "2000-01-01T00:00:00Z"),
        _event(3, (now + timedelta(hours=23)).isoformat()),
        _event(4, (now + timedelta(hours=25)).isoformat()),
        _event(5, 946684799000),  # epoch ms of 1999-12-31T23:59:59Z
        _event(6, "2026-11-27T10:00:00.000Z", event_id="6f1c3c2e-8a53-4c1b-9a35-2f4f3a1f0b7e"),  # fast path
    ]
    put(ingest_env, "window/a.ndjson", ndjson(lines))
    assert run_dag("events_ingest").state == "success"
    assert sorted(r["raw_event_data"]["n"] for r in events(db)) == [2, 3, 6]
    (row,) = registry(db)
    rejected = read_ndjson(ingest_env, row["rejected_key"])
    assert [r["line"] for r in rejected] == [1, 4, 5]
    for record in rejected:
        assert record["reason"].startswith("timestamp ")
        assert "is outside the accepted window 2000-01-01T00:00:00Z .. " in record["reason"]
        assert "events_ingest_timestamp_min" in record["reason"]


def test_the_window_follows_its_variables(
    ingest_env: Any, db: Any, run_dag: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_INGEST_TIMESTAMP_MIN", "2026-11-27T00:00:00+00:00")
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_INGEST_TIMESTAMP_MAX_AHEAD_HOURS", "0")
    now = datetime.now(UTC)
    lines = [
        _event(1, "2026-11-26T23:59:59Z"),
        _event(2),
        _event(3, (now + timedelta(minutes=5)).isoformat()),
    ]
    put(ingest_env, "window/b.ndjson", ndjson(lines))
    assert run_dag("events_ingest").state == "success"
    assert [r["raw_event_data"]["n"] for r in events(db)] == [2]


def test_a_wrong_window_variable_fails_naming_it(
    ingest_env: Any, db: Any, run_dag: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_INGEST_TIMESTAMP_MIN", "2000-01-01")  # no offset
    put(ingest_env, "window/c.ndjson", ndjson([_event(1)]))
    caplog.set_level(logging.ERROR)
    dr = run_dag("events_ingest")
    assert dr.state == "failed"
    assert "'events_ingest_timestamp_min' = '2000-01-01' is not an ISO-8601 date-time" in caplog.text
    assert registry(db) == []


@pytest.mark.parametrize(
    ("variable", "value", "kind"),
    [
        ("AIRFLOW_VAR_EVENTS_INGEST_MAX_FILE_ROWS", "4", "too_many_rows"),
        ("AIRFLOW_VAR_EVENTS_INGEST_MAX_FILE_BYTES", "200", "too_large"),
    ],
)
@pytest.mark.parametrize("name", ["caps/a.ndjson.gz", "caps/a.parquet"])
def test_a_file_over_a_cap_is_quarantined_with_that_reason(
    ingest_env: Any,
    db: Any,
    run_dag: Any,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    kind: str,
    name: str,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv(variable, value)
    rows = [_event(n, pad="x" * 30) for n in range(6)]
    if name.endswith(".parquet"):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        put(ingest_env, name, buf.getvalue())
    else:
        put(ingest_env, name, ndjson(rows))
    assert run_dag("events_ingest").state == "success"
    (row,) = registry(db)
    assert row["status"] == "quarantined" and count(db) == 0
    error = orjson.loads(row["error"])
    assert error["kind"] == kind
    assert variable.removeprefix("AIRFLOW_VAR_").lower() in error["detail"]
    assert keys(ingest_env, "quarantine/") == [f"quarantine/{name}", f"quarantine/{name}.error.json"]


def test_a_line_over_the_line_limit_is_rejected_alone(
    ingest_env: Any, db: Any, run_dag: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_readers, "MAX_LINE_BYTES", 2000)
    monkeypatch.setattr(file_readers, "LONG_LINE_RAW_BYTES", 50)
    lines = [_event(1), _event(2, pad="é" * 3000, ip_address="203.0.113.78"), _event(3)]
    put(ingest_env, "long/a.ndjson.gz", ndjson(lines))
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    assert sorted(r["raw_event_data"]["n"] for r in events(db)) == [1, 3]
    (row,) = registry(db)
    assert row["status"] == "processed" and (row["rows_loaded"], row["rows_rejected"]) == (2, 1)
    (rejected,) = read_ndjson(ingest_env, row["rejected_key"])
    assert rejected["line"] == 2
    assert "line is 6" in rejected["reason"] and "more than the 2000 allowed" in rejected["reason"]
    assert rejected["raw"] == ndjson([lines[1]])[:50].decode()
