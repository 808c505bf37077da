"""The fast path stores exactly what the per-line reference path stores (after COPY, in PostgreSQL).

The same NDJSON (demo events + every hand-written edge case of
``tests/unit/ingest/test_arrow_row_builder.py``) goes through both row builders
as the pipeline feeds them - :class:`RowBuilder` over decoded lines,
:class:`FastRowBuilder` over byte blocks - and each one's COPY text is loaded
into ``events_log`` with the pipeline's own ``copy_load.copy_events``. The
stored rows (``timestamp`` and ``ip_address`` as PostgreSQL holds them,
``raw_event_data`` as text), the rejected lines and the figures the registry
and ``ingest_counts`` get must be identical; so must what the DAG itself stores.
A line PostgreSQL refuses is rejected and the file loaded again without it, as
the pipeline does.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
import psycopg

from devtools.demo_data import iter_events
from events_pipeline.attribution.domains import DomainMatcher, load_domain_map
from events_pipeline.common.compat import copy_error_line
from events_pipeline.ingest import copy_load
from events_pipeline.ingest.arrow_row_builder import FastRowBuilder
from events_pipeline.ingest.file_readers import iter_byte_blocks, iter_line_blocks
from events_pipeline.ingest.row_builder import RejectSink, RowBuilder
from tests.conftest import task_states
from tests.integration.ingest.conftest import LANDING_BUCKET, keys, put, read_ndjson, registry
from tests.unit.ingest.test_arrow_row_builder import EDGE_EVENTS

KEY = "fast/differential.ndjson"


def _body() -> bytes:
    demo = [orjson.dumps(e) for e in iter_events(400)]
    edge = [e if isinstance(e, bytes) else orjson.dumps(e) for e in EDGE_EVENTS]
    return b"\n".join(demo[:200] + edge + demo[200:]) + b"\n"


def _stored_rows(db: Any) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT event_id::text, event_type, session_id, visitor_id, site_id, timestamp, url, path, "
        "user_agent, ip_address, raw_event_data::text, client_id, batch_id, privacy_level "
        "FROM events_log ORDER BY event_id, raw_event_data::text"
    ).fetchall()


def _builder(
    cls: type[RowBuilder], db: Any, skip: dict[int, str], *, file_id: int, bucket: str, key: str, etag: str
) -> Any:
    """A builder with the identity the pipeline gives the file ``bucket/key#etag``."""
    return cls(
        DomainMatcher(load_domain_map(db)),
        file_id=file_id,
        file_batch_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{bucket}/{key}#{etag}")),
        line_id_prefix=f"{bucket}/{key}#{etag}",
        secret=lambda: os.environ["AIRFLOW_VAR_EVENTS_IP_HASH_SECRET"],
        rejects=RejectSink(),
        skip_lines=dict(skip),
    )


def _reference(builder: RowBuilder, body: bytes) -> Iterable[bytes]:
    """The per-line path: decoded lines, one COPY row per good line."""
    return (builder.ndjson_block(lines) for lines in iter_line_blocks(io.BytesIO(body), gzipped=False))


def _fast(builder: FastRowBuilder, body: bytes) -> Iterable[bytes | memoryview]:
    """The fast path: byte blocks, as ``pipeline`` streams NDJSON."""
    blocks = iter_byte_blocks(io.BytesIO(body), gzipped=False)
    return (part for block in blocks for part in builder.ndjson_bytes_parts(block))


def _load(db: Any, cls: type[RowBuilder], feed: Any, body: bytes, **ids: Any) -> dict[str, Any]:
    """COPY the builder's text of ``body`` into an empty events_log; return what is stored and counted.

    :param feed: ``_reference`` or ``_fast``: how the builder is given the file.
    :param ids: the file's identity (``file_id``, ``bucket``, ``key``, ``etag``).
    """
    skip: dict[int, str] = {}
    while True:
        builder = _builder(cls, db, skip, **ids)
        db.execute("TRUNCATE events_log")
        try:
            with db.transaction():
                copy_load.copy_events(db, feed(builder, body))
        except (psycopg.errors.DataError, psycopg.errors.CheckViolation) as exc:
            # as the pipeline does: reject the source line of the refused row, load again without it
            line = builder.copy_line_to_source[copy_error_line(exc)]
            skip[line] = f"refused by PostgreSQL: {exc.diag.message_primary or exc}"
            continue
        return {
            "rows": _stored_rows(db),
            "rejected": [orjson.loads(x) for x in builder.rejects.stream().read().splitlines()],
            "figures": (builder.rows, builder.rejects.count, builder.blank, builder.nul_lines),
            "counts": sorted(builder.per_client.items()),
            "builder": builder,
        }


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["figures"] == want["figures"]
    assert got["counts"] == want["counts"]
    assert got["rejected"] == want["rejected"]
    assert len(got["rows"]) == len(want["rows"]) > 400
    for got_row, want_row in zip(got["rows"], want["rows"], strict=True):
        assert got_row == want_row


def test_fast_and_reference_builders_store_the_same(ingest_env: Any, db: Any) -> None:
    body = _body()
    ids = {"file_id": 7, "bucket": LANDING_BUCKET, "key": f"incoming/{KEY}", "etag": "e"}
    want = _load(db, RowBuilder, _reference, body, **ids)
    got = _load(db, FastRowBuilder, _fast, body, **ids)
    _assert_same(got, want)
    assert any("refused by PostgreSQL" in r["reason"] for r in got["rejected"])
    fast = got["builder"]
    assert fast.fast_lines > 0 and fast.slow_lines > 0  # both paths of the fast builder were used


def test_the_pipeline_stores_what_the_reference_builder_stores(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3, body = ingest_env, _body()
    put(s3, KEY, body)
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    (row,) = registry(db)
    (rejected_key,) = keys(s3, "rejected/")
    loaded = {
        "rows": _stored_rows(db),
        "rejected": read_ndjson(s3, rejected_key),
        "figures": (row["rows_loaded"], row["rows_rejected"], row["lines_blank"], row["lines_nul_replaced"]),
        "counts": db.execute(
            "SELECT client_id, rows_loaded FROM ingest_counts ORDER BY client_id"
        ).fetchall(),
    }
    ids = {k: row[k] for k in ("file_id", "bucket", "key", "etag")}
    _assert_same(loaded, _load(db, RowBuilder, _reference, body, **ids))
