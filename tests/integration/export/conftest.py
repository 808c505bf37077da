"""Fixtures and helpers of the export tests: clients, events inserted directly, reading exports back.

Events are inserted with COPY and explicit ``created_at`` / ``client_id`` (the
export does not depend on the ingest code).
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.demo_data import make_event
from events_pipeline.export.manifest import read_manifest

#: A past hour inside the partitions the fixtures create (yesterday..+3 days are
#: daily partitions, anything else lands in the default partition: both work).
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
CLIENT_BUCKETS = ("client-acme", "client-globex")

EVENT_COLUMNS = (
    "event_id",
    "event_type",
    "session_id",
    "visitor_id",
    "site_id",
    "timestamp",
    "url",
    "path",
    "user_agent",
    "ip_address",
    "raw_event_data",
    "created_at",
    "client_id",
    "batch_id",
)


@pytest.fixture
def export_env(services: None, clean_tables: None, s3: Any, db: Any) -> Iterator[Any]:
    """Empty tables, the landing/backup buckets and two client buckets; yields the boto3 client."""
    for bucket in CLIENT_BUCKETS:
        s3.create_bucket(Bucket=bucket)
    yield s3


def add_client(
    db: Any,
    client_id: str,
    bucket: str,
    prefix: str,
    *,
    conn_id: str | None = None,
    active: bool = True,
    privacy_level: str = "standard",
) -> None:
    """Insert a client row.

    :param db: autocommit connection.
    :param client_id: id.
    :param bucket: export bucket.
    :param prefix: export prefix.
    :param conn_id: export_conn_id.
    :param active: active flag.
    :param privacy_level: standard or gdpr.
    """
    db.execute(
        "INSERT INTO clients (client_id, name, privacy_level, export_bucket, export_prefix, "
        "export_conn_id, active) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (client_id, client_id.title(), privacy_level, bucket, prefix, conn_id, active),
    )


def make_rows(
    client_id: str | None, created: Sequence[datetime], *, seed: int = 1, batch_id: str = "batch-1"
) -> list[dict[str, Any]]:
    """Build event rows for ``events_log``, one per ``created`` instant.

    :param client_id: the client (None = unattributed).
    :param created: ``created_at`` of each row.
    :param seed: random seed.
    :param batch_id: batch id.
    """
    rng = random.Random(seed)
    rows = []
    for i, when in enumerate(created):
        ev = make_event(rng, when - timedelta(seconds=5))
        row = {
            "event_id": ev["event_id"],
            "event_type": ev["event_type"],
            "session_id": ev["session_id"],
            "visitor_id": ev["visitor_id"],
            "site_id": ev["site_id"],
            "timestamp": datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00")),
            "url": ev["url"],
            "path": "/" + ev["url"].split("?")[0].split("/", 3)[-1],
            "user_agent": ev["user_agent"],
            "ip_address": ev["ip_address"],
            "raw_event_data": json.dumps(ev),
            "created_at": when,
            "client_id": client_id,
            "batch_id": batch_id,
        }
        if i % 7 == 3:  # some NULLs and empty strings, as real data has
            row["session_id"] = None
            row["ip_address"] = None
            row["user_agent"] = ""
        rows.append(row)
    return rows


def insert_rows(db: Any, rows: Sequence[dict[str, Any]]) -> None:
    """COPY rows into events_log.

    :param db: connection.
    :param rows: rows from :func:`make_rows`.
    """
    cols = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
    with db.cursor().copy(f"COPY events_log ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in EVENT_COLUMNS])


def spread(hour_start: datetime, n: int, *, offset_minutes: float = 0.0) -> list[datetime]:
    """Return ``n`` instants spread inside the hour starting at ``hour_start``.

    :param hour_start: the hour.
    :param n: how many.
    :param offset_minutes: shift from the hour start.
    """
    step = (60 - offset_minutes) * 60_000_000 // max(n, 1)
    return [hour_start + timedelta(minutes=offset_minutes, microseconds=i * step + 123) for i in range(n)]


def list_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    """Return every key under ``prefix`` in ``bucket``, sorted.

    :param s3: boto3 client.
    :param bucket: bucket.
    :param prefix: key prefix.
    """
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def read_hour(s3: Any, bucket: str, folder: str) -> tuple[dict[str, Any], Any]:
    """Read an exported hour as a client would: the manifest, then every listed file.

    :param s3: boto3 client.
    :param bucket: bucket.
    :param folder: the hour's folder (``prefix/dt=.../hour=HH``).
    :return: ``(manifest, pyarrow.Table of all parts)``.
    """
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from events_pipeline.export.parquet_parts import arrow_schema

    manifest = read_manifest(s3.get_object(Bucket=bucket, Key=f"{folder}/_manifest.json")["Body"].read())
    tables = []
    for f in manifest["files"]:
        body = s3.get_object(Bucket=bucket, Key=f"{folder}/{f['key']}")["Body"].read()
        assert len(body) == f["bytes"]
        assert hashlib.sha256(body).hexdigest() == f["sha256"]
        table = pq.read_table(io.BytesIO(body))
        assert table.num_rows == f["rows"]
        tables.append(table)
    table = pa.concat_tables(tables) if tables else arrow_schema().empty_table()
    return manifest, table


def folder(prefix: str, hour_start: datetime) -> str:
    """Return ``prefix/dt=YYYY-MM-DD/hour=HH``.

    :param prefix: client prefix or backup client id.
    :param hour_start: the hour.
    """
    return f"{prefix}/dt={hour_start:%Y-%m-%d}/hour={hour_start:%H}"


def states_by_client(dag_run: Any) -> dict[str, str]:
    """Map each client to the state of the ``export_group`` task that exported it.

    Groups are named ``gNN: client,client...`` (``gNN!:`` for clients whose last hour failed).

    :param dag_run: a DagRun of events_export.
    """
    out = {}
    for ti in dag_run.get_task_instances():
        if ti.task_id == "export_group" and ti.rendered_map_index:
            for client_id in ti.rendered_map_index.split(": ", 1)[1].split(","):
                out[client_id] = str(ti.state)
    return out


def run_hour(run_dag: Any, hour_start: datetime) -> Any:
    """Run events_export for the hour starting at ``hour_start`` (dag.test covers the hour ENDING at T).

    :param run_dag: the run_dag fixture.
    :param hour_start: the hour.
    """
    return run_dag("events_export", logical_date=hour_start + timedelta(hours=1))
