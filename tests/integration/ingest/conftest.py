"""Fixtures and helpers of the ingest tests: clients, landing objects, registry reads."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
from psycopg import sql

from events_pipeline.common.db import as_dicts
from tests.conftest import LANDING_BUCKET

#: The IP pseudonym key of the test run (tests/conftest.py sets the Variable), for direct calls.
TEST_SECRET = os.environ["AIRFLOW_VAR_EVENTS_IP_HASH_SECRET"]


@pytest.fixture
def ingest_env(services: None, clean_tables: None, s3: Any, db: Any) -> Iterator[Any]:
    """Empty pipeline tables, the demo clients and domains, and an empty landing bucket.

    Yields the boto3 client of the S3 server.
    """
    add_client(db, "acme", ["acme.com"])
    add_client(db, "globex", ["globex.de", "globex-shop.eu"], privacy_level="gdpr")
    add_client(db, "initech", ["initech.io"])
    yield s3


def add_client(db: Any, client_id: str, domains: Sequence[str], *, privacy_level: str = "standard") -> None:
    """Insert a client and its domains.

    :param db: autocommit connection.
    :param client_id: the client id.
    :param domains: its domains.
    :param privacy_level: ``standard`` or ``gdpr``.
    """
    db.execute(
        "INSERT INTO clients (client_id, name, privacy_level, export_bucket, export_prefix) "
        "VALUES (%s, %s, %s, %s, %s)",
        (client_id, client_id.title(), privacy_level, f"client-{client_id}", client_id),
    )
    for domain in domains:
        db.execute("INSERT INTO client_domains (domain, client_id) VALUES (%s, %s)", (domain, client_id))


def ndjson(lines: Sequence[Any]) -> bytes:
    """Encode events (dicts, serialised) or raw lines (str, kept as is) as NDJSON bytes.

    :param lines: dicts or already-encoded lines.
    """
    out = io.BytesIO()
    for line in lines:
        out.write(line.encode("utf-8") if isinstance(line, str) else orjson.dumps(line))
        out.write(b"\n")
    return out.getvalue()


def put(s3: Any, key: str, body: bytes, *, gz: bool | None = None) -> str:
    """Write a landing object under ``incoming/`` (gzip when the key ends in .gz).

    :param s3: boto3 client.
    :param key: key below ``incoming/``.
    :param body: uncompressed bytes (compressed here when ``gz``).
    :param gz: force compression on or off.
    """
    if gz is None:
        gz = key.endswith(".gz")
    s3.put_object(Bucket=LANDING_BUCKET, Key=f"incoming/{key}", Body=gzip.compress(body) if gz else body)
    return f"incoming/{key}"


def keys(s3: Any, prefix: str = "") -> list[str]:
    """All keys of the landing bucket under ``prefix``.

    :param s3: boto3 client.
    :param prefix: key prefix.
    """
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=LANDING_BUCKET, Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(out)


def read_ndjson(s3: Any, key: str) -> list[dict[str, Any]]:
    """Read an NDJSON object of the landing bucket.

    :param s3: boto3 client.
    :param key: the key.
    """
    body = s3.get_object(Bucket=LANDING_BUCKET, Key=key)["Body"].read()
    return [orjson.loads(line) for line in body.splitlines() if line]


def registry(db: Any) -> list[dict[str, Any]]:
    """All landing_files rows as dicts, by file_id.

    :param db: autocommit connection.
    """
    return as_dicts(db.execute("SELECT * FROM landing_files ORDER BY file_id"))


def events(db: Any, where: str = "TRUE") -> list[dict[str, Any]]:
    """events_log rows as dicts (ip_address as text), ordered by timestamp and event_id.

    :param db: autocommit connection.
    :param where: a fixed SQL condition written by the test (no values).
    """
    query = sql.SQL(
        "SELECT event_id::text, event_type, session_id, visitor_id, site_id, timestamp, url, path, "
        "user_agent, host(ip_address) AS ip, raw_event_data, created_at, client_id, batch_id, "
        "privacy_level, file_id FROM events_log WHERE {} ORDER BY timestamp, event_id"
    ).format(sql.SQL(where))
    return as_dicts(db.execute(query))


def count(db: Any, table: str = "events_log") -> int:
    """Rows in a table.

    :param db: autocommit connection.
    :param table: table name (fixed by the test).
    """
    return db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
