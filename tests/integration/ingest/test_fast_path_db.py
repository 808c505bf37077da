"""The fast path stores exactly what the per-line reference path stores (after COPY, in PostgreSQL).

The same file (demo events + every hand-written edge case of
``tests/unit/ingest/test_arrow_row_builder.py``) is loaded by the DAG twice, once with the
vectorised path and once with ``ingest.FAST_PATH = False``; the stored rows
(``timestamp`` and ``ip_address`` as PostgreSQL holds them, ``raw_event_data``
as text), the rejected lines, the registry figures and ``ingest_counts`` must
be identical.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from devtools.demo_data import iter_events
from events_pipeline.ingest import pipeline as ingest
from tests.conftest import task_states
from tests.integration.ingest.conftest import LANDING_BUCKET, keys, put, read_ndjson
from tests.unit.ingest.test_arrow_row_builder import EDGE_EVENTS

KEY = "fast/differential.ndjson"  # not gzip: the same bytes (ETag) both times


def _body() -> bytes:
    demo = [orjson.dumps(e) for e in iter_events(400)]
    edge = [e if isinstance(e, bytes) else orjson.dumps(e) for e in EDGE_EVENTS]
    return b"\n".join(demo[:200] + edge + demo[200:]) + b"\n"


def _stored(db: Any) -> dict[str, Any]:
    rows = db.execute(
        "SELECT event_id::text, event_type, session_id, visitor_id, site_id, timestamp, url, path, "
        "user_agent, ip_address, raw_event_data::text, client_id, batch_id, privacy_level "
        "FROM events_log ORDER BY event_id, raw_event_data::text"
    ).fetchall()
    files = db.execute(
        "SELECT rows_loaded, rows_rejected, lines_blank, lines_nul_replaced, batch_id FROM landing_files"
    ).fetchall()
    counts = db.execute("SELECT client_id, rows_loaded FROM ingest_counts ORDER BY client_id").fetchall()
    return {"rows": rows, "files": files, "counts": counts}


def _load(s3: Any, db: Any, run_dag: Any, body: bytes) -> dict[str, Any]:
    db.execute("TRUNCATE events_log, ingest_counts, landing_files")
    for key in keys(s3):
        s3.delete_object(Bucket=LANDING_BUCKET, Key=key)
    put(s3, KEY, body)
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    out = _stored(db)
    (rejected,) = keys(s3, "rejected/")
    out["rejected"] = read_ndjson(s3, rejected)
    return out


def test_fast_and_reference_paths_store_the_same(
    ingest_env: Any, db: Any, run_dag: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _body()
    fast = _load(ingest_env, db, run_dag, body)
    monkeypatch.setattr(ingest, "FAST_PATH", False)
    reference = _load(ingest_env, db, run_dag, body)
    assert fast["files"] == reference["files"]
    assert fast["counts"] == reference["counts"]
    assert fast["rejected"] == reference["rejected"]
    assert len(fast["rows"]) == len(reference["rows"]) > 400
    for got, want in zip(fast["rows"], reference["rows"], strict=True):
        assert got == want
