"""Erasure: a visitor in several exported hours, purged from events_log and the backup bucket.

The hours purged are those of the visitor's rows in events_log (recorded when they are
deleted); other hours are not read.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from events_pipeline.erasure.requests import LandingLayout, run_erasure
from events_pipeline.export.manifest import manifest_bytes

from .conftest import add_client, count, event, insert_events

BACKUP = "test-backup"
LANDING = "test-landing"
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("visitor_id", pa.string()),
        ("event_type", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("client_id", pa.string()),
    ]
)


def _parquet(rows):
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _put_hour(s3, client, hour, files, *, relative_keys):
    folder = f"{client}/dt={hour:%Y-%m-%d}/hour={hour:%H}"
    entries = []
    for name, rows in files.items():
        body = _parquet(rows)
        key = f"{folder}/{name}"
        s3.put_object(Bucket=BACKUP, Key=key, Body=body)
        entries.append(
            {
                "key": name if relative_keys else key,
                "rows": len(rows),
                "bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        )
    manifest = {
        "format_version": 1,
        "client_id": client,
        "interval_start": hour.isoformat(),
        "interval_end": (hour + timedelta(hours=1)).isoformat(),
        "row_count": sum(e["rows"] for e in entries),
        "files": entries,
        "generated_at": "2026-11-20T00:00:00+00:00",
    }
    s3.put_object(Bucket=BACKUP, Key=f"{folder}/_manifest.json", Body=json.dumps(manifest).encode())
    return folder


def _rows(hour, visitors, client="acme"):
    return [
        {
            "event_id": f"{v}-{i}",
            "visitor_id": v,
            "event_type": "pageview",
            "created_at": hour,
            "client_id": client,
        }
        for i, v in enumerate(visitors)
    ]


def _manifest(s3, folder):
    return json.loads(s3.get_object(Bucket=BACKUP, Key=f"{folder}/_manifest.json")["Body"].read())


def _read(s3, key):
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=BACKUP, Key=key)["Body"].read()))


def test_erasure_across_hours(maint_db, partitions_back, s3, run_dag):
    db = maint_db
    add_client(db, "acme", bucket="acme-exports", prefix="events/acme")
    add_client(db, "globex")
    h1 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    h2 = h1 + timedelta(hours=1)
    h3 = h1 + timedelta(hours=2)
    f1 = _put_hour(s3, "acme", h1, {"part-0.parquet": _rows(h1, ["bob", "amy", "bob"])}, relative_keys=True)
    f2 = _put_hour(
        s3,
        "acme",
        h2,
        {"part-0.parquet": _rows(h2, ["amy", "cid"]), "part-1.parquet": _rows(h2, ["bob", None])},
        relative_keys=False,
    )
    f3 = _put_hour(s3, "acme", h3, {"part-0.parquet": _rows(h3, ["amy"])}, relative_keys=True)
    g1 = _put_hour(s3, "globex", h1, {"part-0.parquet": _rows(h1, ["bob"], "globex")}, relative_keys=True)
    untouched = {
        k: s3.get_object(Bucket=BACKUP, Key=k)["ETag"]
        for k in (
            f"{f3}/part-0.parquet",
            f"{f3}/_manifest.json",
            f"{g1}/part-0.parquet",
            f"{g1}/_manifest.json",
        )
    }
    insert_events(db, [event(h1, client_id="acme", visitor_id="bob", status="exported") for _ in range(3)])
    insert_events(db, [event(h2, client_id="acme", visitor_id="bob", status="exported")])
    insert_events(db, [event(h2, client_id="acme", visitor_id="amy", status="exported")])
    insert_events(db, [event(h1, client_id="globex", visitor_id="bob", status="exported")])
    rid = db.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id) "
        "VALUES ('acme', 'bob') RETURNING request_id"
    ).fetchone()[0]

    dr = run_dag("events_gdpr_erasure", logical_date=datetime.now(UTC))
    assert dr.state == "success"

    # events_log: acme's bob gone, the others untouched.
    assert count(db, "client_id = 'acme' AND visitor_id = 'bob'") == 0
    assert count(db, "client_id = 'globex' AND visitor_id = 'bob'") == 1
    assert count(db, "visitor_id = 'amy'") == 1
    # Backup objects: bob removed, everyone else (and the null visitor) kept, same schema.
    t1 = _read(s3, f"{f1}/part-0.parquet")
    assert t1.column("visitor_id").to_pylist() == ["amy"]
    assert t1.schema.equals(SCHEMA)
    assert _read(s3, f"{f2}/part-1.parquet").column("visitor_id").to_pylist() == [None]
    assert _read(s3, f"{f2}/part-0.parquet").column("visitor_id").to_pylist() == ["amy", "cid"]
    for k, etag in untouched.items():
        assert s3.get_object(Bucket=BACKUP, Key=k)["ETag"] == etag
    # Manifests: row counts, bytes and sha256 follow the rewritten objects; keys unchanged.
    m1, m2 = _manifest(s3, f1), _manifest(s3, f2)
    assert m1["row_count"] == 1 and m1["files"][0]["key"] == "part-0.parquet"
    assert m2["row_count"] == 3
    for folder, m in ((f1, m1), (f2, m2)):
        for entry in m["files"]:
            key = entry["key"] if "/" in entry["key"] else f"{folder}/{entry['key']}"
            body = s3.get_object(Bucket=BACKUP, Key=key)["Body"].read()
            assert entry["bytes"] == len(body)
            assert entry["sha256"] == hashlib.sha256(body).hexdigest()
    assert m1["generated_at"] == "2026-11-20T00:00:00+00:00"
    for folder in (f1, f2):  # written back as the export writes manifests, every other field as it was
        body = s3.get_object(Bucket=BACKUP, Key=f"{folder}/_manifest.json")
        assert body["ContentType"] == "application/json"
        assert body["Body"].read() == manifest_bytes(_manifest(s3, folder))
    # The request's audit trail.
    status, rows_deleted, objects, client_objects, processed_at = db.execute(
        "SELECT status, rows_deleted, objects_rewritten, client_objects, processed_at "
        "FROM gdpr_erasure_requests WHERE request_id = %s",
        (rid,),
    ).fetchone()
    assert status == "done" and rows_deleted == 4 and processed_at is not None
    assert sorted((o["key"], o["action"], o["rows_removed"]) for o in objects) == [
        (f"s3://{BACKUP}/{f1}/part-0.parquet", "rewritten", 2),
        (f"s3://{BACKUP}/{f2}/part-1.parquet", "rewritten", 1),
    ]
    # only the two hours that held bob were read (h3 and globex's folder were not)
    read = db.execute(
        "SELECT count(*) FROM gdpr_erasure_hours WHERE request_id = %s AND purged_at IS NOT NULL", (rid,)
    ).fetchone()[0]
    assert read == 2
    client_keys = {o["key"] for o in client_objects}
    assert f"s3://acme-exports/events/acme/dt={h1:%Y-%m-%d}/hour={h1:%H}/part-0.parquet" in client_keys
    assert f"s3://acme-exports/events/acme/dt={h1:%Y-%m-%d}/hour={h1:%H}/_manifest.json" in client_keys

    # Re-run: nothing left to do, nothing rewritten.
    etags = {
        k: s3.get_object(Bucket=BACKUP, Key=k)["ETag"]
        for k in (f"{f1}/part-0.parquet", f"{f1}/_manifest.json")
    }
    dr = run_dag("events_gdpr_erasure", logical_date=datetime.now(UTC))
    assert dr.state == "success"
    for k, etag in etags.items():
        assert s3.get_object(Bucket=BACKUP, Key=k)["ETag"] == etag


def test_erasure_crash_between_object_and_manifest(maint_db, partitions_back, s3):
    """A crash after an object was rewritten but before its manifest: the retry fixes the manifest."""
    db = maint_db
    add_client(db, "acme")
    h1 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    folder = _put_hour(s3, "acme", h1, {"part-0.parquet": _rows(h1, ["bob", "amy"])}, relative_keys=True)
    # Simulate the crash: bob's rows were deleted and their hour recorded (one transaction),
    # the object already lost bob, the manifest still says 2 rows.
    s3.put_object(Bucket=BACKUP, Key=f"{folder}/part-0.parquet", Body=_parquet(_rows(h1, ["amy"])))
    rid = db.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id, status, attempts, next_attempt_at) "
        "VALUES ('acme', 'bob', 'processing', 1, now() - interval '1 minute') RETURNING request_id"
    ).fetchone()[0]
    db.execute(
        "INSERT INTO gdpr_erasure_hours (request_id, export_hour, rows_deleted) VALUES (%s, %s, 1)", (rid, h1)
    )
    import boto3

    client = boto3.client("s3", endpoint_url=s3.meta.endpoint_url)
    run_erasure(db, client, BACKUP, LandingLayout(bucket=LANDING))
    m = _manifest(s3, folder)
    body = s3.get_object(Bucket=BACKUP, Key=f"{folder}/part-0.parquet")["Body"].read()
    assert m["row_count"] == 1 and m["files"][0]["rows"] == 1
    assert m["files"][0]["sha256"] == hashlib.sha256(body).hexdigest()
    assert db.execute("SELECT status, attempts FROM gdpr_erasure_requests").fetchone() == ("done", 2)
    assert db.execute("SELECT visitor_id FROM gdpr_erasure_requests").fetchone()[0] is None
