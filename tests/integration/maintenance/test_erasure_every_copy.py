"""Erasure reaches every copy: events_log (attributed and not), backups, rejected/, processed/, quarantine/.

The request is filed through the trigger form and carried out by the same run; then
the visitor id is searched in every bucket the pipeline keeps (raw bytes, gzip content,
Parquet cells) and in the text of every table of the events database.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from events_pipeline.erasure.requests import LandingLayout, run_erasure
from events_pipeline.maintenance.reattribution import run_reattribution
from tests.conftest import BACKUP_BUCKET, LANDING_BUCKET, task_states

from .conftest import add_client, count, event, insert_events

V = "v-erase-7f3a9c1e5b"  # the visitor; unique, so a byte search finds only it
CLIENT_BUCKET = "acme-exports"


def _line(visitor: str, site: str, **extra: object) -> bytes:
    obj = {
        "event_type": "pageview",
        "timestamp": "2026-11-27T10:00:00Z",
        "visitor_id": visitor,
        "site_id": site,
    }
    return json.dumps({**obj, **extra}).encode() + b"\n"


def _rejected(*records: tuple[int, bytes]) -> bytes:
    return b"".join(
        json.dumps(
            {"line": n, "reason": "timestamp has no UTC offset", "raw": raw.decode().rstrip("\n")}
        ).encode()
        + b"\n"
        for n, raw in records
    )


def _parquet(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, compression="snappy")
    return buf.getvalue()


def _landing_file(db, key: str, *, processed: str, rejected: str | None, rows: int, rejects: int) -> int:
    return db.execute(
        "INSERT INTO landing_files (bucket, key, etag, status, rows_loaded, rows_rejected, processed_key, "
        "rejected_key, load_started_at, loaded_at, moved_at) "
        "VALUES (%s, %s, md5(%s), 'processed', %s, %s, %s, %s, now() - interval '2 hours', "
        "now() - interval '2 hours', now() - interval '2 hours') RETURNING file_id",
        (LANDING_BUCKET, key, key, rows, rejects, processed, rejected),
    ).fetchone()[0]


def _put(s3, bucket: str, key: str, body: bytes, content_type: str = "application/x-ndjson") -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def _get(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _keys(s3, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _readable_forms(body: bytes) -> list[bytes]:
    """The object's bytes, and what they hold when gzip (even cut short) or Parquet."""
    forms = [body]
    if body[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(wbits=47)
        try:
            forms.append(d.decompress(body))
        except zlib.error:
            forms.append(b"")
    if body[:4] == b"PAR1":
        forms.append(json.dumps(pq.read_table(io.BytesIO(body)).to_pylist(), default=str).encode())
    return forms


def _buckets_holding(s3, needle: str, *, skip: set[str]) -> list[str]:
    found = []
    for b in s3.list_buckets()["Buckets"]:
        if b["Name"] in skip:
            continue
        for key in _keys(s3, b["Name"]):
            if any(needle.encode() in form for form in _readable_forms(_get(s3, b["Name"], key))):
                found.append(f"s3://{b['Name']}/{key}")
    return found


def _tables_holding(db, needle: str) -> list[str]:
    tables = [
        r[0]
        for r in db.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        )
    ]
    return [
        t
        for t in tables
        if db.execute(
            sql.SQL("SELECT count(*) FROM {} AS x WHERE x::text LIKE %s").format(sql.Identifier(t)),
            (f"%{needle}%",),
        ).fetchone()[0]
    ]


@pytest.fixture
def erasure_db(maint_db):
    """The events DB, emptied (tombstones included) before and after the test."""
    return maint_db


def _seed(db, s3):
    """Every copy of V the pipeline keeps, as ingest and export would leave them (plus other visitors')."""
    add_client(db, "acme", domains=["acme.com"], bucket=CLIENT_BUCKET, prefix="events/acme")
    add_client(db, "globex", domains=["globex.com"])
    s3.create_bucket(Bucket=CLIENT_BUCKET)
    h1 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    h0 = h1 - timedelta(hours=1)

    # F1: gzip NDJSON; V's two loaded lines and one rejected line, amy's, gus (globex)
    f1_lines = [
        _line(V, "www.acme.com"),
        _line("amy", "www.acme.com"),
        _line(V, "www.acme.com", n=2),
        _line(V, "www.acme.com", timestamp="2026-11-27T10:00:00"),
        _line("gus", "www.globex.com"),
        _line("amy", "www.acme.com", timestamp="2026-11-27T10:00:00"),
    ]
    k1 = "2026/11/27/batch-1"
    f1 = _landing_file(
        db,
        f"incoming/{k1}.ndjson.gz",
        processed=f"processed/{k1}.f1.ndjson.gz",
        rejected=f"rejected/{k1}.f1.ndjson.gz.rejected.ndjson",
        rows=4,
        rejects=2,
    )
    _put(
        s3,
        LANDING_BUCKET,
        f"processed/{k1}.f1.ndjson.gz",
        gzip.compress(b"".join(f1_lines)),
        "application/gzip",
    )
    _put(
        s3,
        LANDING_BUCKET,
        f"rejected/{k1}.f1.ndjson.gz.rejected.ndjson",
        _rejected((4, f1_lines[3]), (6, f1_lines[5])),
    )
    # F2: plain NDJSON; V not attributed yet (shop.acme.com: acme.com is its nearest listed parent now),
    # pending and archived; V attributed and pending; amy
    f2_lines = [
        _line(V, "shop.acme.com"),
        _line(V, "shop.acme.com", n=2),
        _line(V, "www.acme.com", n=3),
        _line("amy", "www.acme.com", n=4),
    ]
    k2 = "2026/11/27/batch-2"
    f2 = _landing_file(
        db, f"incoming/{k2}.ndjson", processed=f"processed/{k2}.f2.ndjson", rejected=None, rows=4, rejects=0
    )
    _put(s3, LANDING_BUCKET, f"processed/{k2}.f2.ndjson", b"".join(f2_lines))
    # F3: Parquet; V's only row rejected (so no event row points at this file), ann loaded
    k3 = "2026/11/27/batch-3"
    f3_rows = [
        {"event_type": "pageview", "timestamp": "yesterday", "visitor_id": V, "site_id": "www.acme.com"},
        {
            "event_type": "pageview",
            "timestamp": "2026-11-27T10:00:00Z",
            "visitor_id": "ann",
            "site_id": "www.acme.com",
        },
    ]
    f3 = _landing_file(
        db,
        f"incoming/{k3}.parquet",
        processed=f"processed/{k3}.f3.parquet",
        rejected=f"rejected/{k3}.f3.parquet.rejected.ndjson",
        rows=1,
        rejects=1,
    )
    _put(
        s3, LANDING_BUCKET, f"processed/{k3}.f3.parquet", _parquet(f3_rows), "application/vnd.apache.parquet"
    )
    _put(
        s3,
        LANDING_BUCKET,
        f"rejected/{k3}.f3.parquet.rejected.ndjson",
        _rejected((1, json.dumps(f3_rows[0]).encode())),
    )
    # quarantine/: an NDJSON file that is not UTF-8 (V's line, amy's with bad bytes) and its report;
    # a gzip cut short holding V; an unrelated file
    q4 = b"".join(
        [_line(V, "www.acme.com"), b'{"visitor_id":"amy","site_id":"www.acme.com","x":"\xff\xfe"}\n']
    )
    _put(s3, LANDING_BUCKET, "quarantine/2026/11/27/batch-4.ndjson", q4)
    _put(
        s3,
        LANDING_BUCKET,
        "quarantine/2026/11/27/batch-4.ndjson.error.json",
        json.dumps({"kind": "invalid_utf8", "detail": "line 2: invalid UTF-8", "line": 2}).encode(),
        "application/json",
    )
    _put(
        s3,
        LANDING_BUCKET,
        "quarantine/2026/11/27/batch-5.ndjson.gz",
        gzip.compress(_line(V, "www.acme.com") * 3)[:-12],
    )
    _put(s3, LANDING_BUCKET, "quarantine/2026/11/26/other.csv", b"a,b\n1,2\n")

    # events_log
    rows = [event(h1 + timedelta(minutes=5), visitor_id=V, status="exported") for _ in range(2)]
    rows += [event(h1 + timedelta(minutes=6), visitor_id="amy", status="exported")]
    rows += [
        event(
            h1 + timedelta(minutes=7),
            client_id="globex",
            visitor_id="gus",
            site_id="www.globex.com",
            status="exported",
        )
    ]
    for r in rows:
        r["file_id"] = f1
    later = datetime.now(UTC) - timedelta(minutes=30)
    f2_rows = [
        event(later, client_id=None, visitor_id=V, site_id="shop.acme.com"),
        event(later, client_id=None, visitor_id=V, site_id="shop.acme.com", status="archived"),
        event(later, visitor_id=V),
        event(later, visitor_id="amy"),
    ]
    f3_row = event(later, visitor_id="ann")
    for r in f2_rows:
        r["file_id"] = f2
    f3_row["file_id"] = f3
    insert_events(db, [*rows, *f2_rows, f3_row])

    # backup bucket: acme's hour h1 holds V twice; acme's hour h0 and globex's h1 do not hold V
    def hour_folder(client, hour, rows):
        folder = f"{client}/dt={hour:%Y-%m-%d}/hour={hour:%H}"
        body = _parquet(rows)
        _put(s3, BACKUP_BUCKET, f"{folder}/part-00000.parquet", body, "application/vnd.apache.parquet")
        manifest = {
            "format_version": 1,
            "client_id": client,
            "interval_start": f"{hour:%Y-%m-%dT%H:00:00Z}",
            "interval_end": f"{hour + timedelta(hours=1):%Y-%m-%dT%H:00:00Z}",
            "row_count": len(rows),
            "files": [
                {
                    "key": "part-00000.parquet",
                    "rows": len(rows),
                    "bytes": len(body),
                    "sha256": hashlib.sha256(body).hexdigest(),
                }
            ],
            "generated_at": "2026-11-27T00:00:00Z",
        }
        _put(s3, BACKUP_BUCKET, f"{folder}/_manifest.json", json.dumps(manifest).encode(), "application/json")
        return folder, body

    ev = lambda v, c="acme": {"event_id": f"{v}-{c}", "visitor_id": v, "client_id": c}  # noqa: E731
    acme_h1, h1_body = hour_folder("acme", h1, [ev(V), ev("amy"), ev(V)])
    hour_folder("acme", h0, [ev("amy")])
    hour_folder("globex", h1, [ev("gus", "globex")])
    # the client's own copy of hour h1 (the client's: listed, never changed)
    client_key = f"events/acme/dt={h1:%Y-%m-%d}/hour={h1:%H}/part-00000.parquet"
    _put(s3, CLIENT_BUCKET, client_key, h1_body, "application/vnd.apache.parquet")
    return {
        "f1": f1,
        "f2": f2,
        "f3": f3,
        "acme_h1": acme_h1,
        "client_key": client_key,
        "k1": k1,
        "k2": k2,
        "k3": k3,
    }


def test_a_form_request_erases_the_visitor_from_every_copy(erasure_db, partitions_back, s3, run_dag, caplog):
    db = erasure_db
    seeded = _seed(db, s3)
    assert _buckets_holding(s3, V, skip={CLIENT_BUCKET}) and _tables_holding(db, V)
    untouched = {
        k: s3.head_object(Bucket=b, Key=k)["ETag"]
        for b, k in (
            (BACKUP_BUCKET, "globex/" + seeded["acme_h1"].split("/", 1)[1] + "/part-00000.parquet"),
            (LANDING_BUCKET, "quarantine/2026/11/26/other.csv"),
            (LANDING_BUCKET, "quarantine/2026/11/27/batch-4.ndjson.error.json"),
            (CLIENT_BUCKET, seeded["client_key"]),
        )
    }
    caplog.set_level(logging.INFO)

    dr = run_dag(
        "events_gdpr_erasure",
        logical_date=datetime.now(UTC),
        run_conf={
            "client_id": "acme",
            "visitor_id": V,
            "requested_by": "DPO of Acme",
            "reference": "TICKET-42",
        },
    )

    assert dr.state == "success", task_states(dr)
    # Nowhere the pipeline keeps: no bucket (byte for byte, through gzip and Parquet), no table text.
    assert _buckets_holding(s3, V, skip={CLIENT_BUCKET}) == []
    assert _tables_holding(db, V) == []
    # The client's own bucket is the client's: unchanged.
    assert (
        s3.head_object(Bucket=CLIENT_BUCKET, Key=seeded["client_key"])["ETag"]
        == untouched[seeded["client_key"]]
    )
    # Everyone else's data stays, byte for byte where the format allows.
    assert count(db) == 4 and count(db, "visitor_id IN ('amy', 'gus', 'ann')") == 4
    k1, k2, k3 = seeded["k1"], seeded["k2"], seeded["k3"]
    f1_left = gzip.decompress(_get(s3, LANDING_BUCKET, f"processed/{k1}.f1.ndjson.gz")).splitlines()
    assert [json.loads(x)["visitor_id"] for x in f1_left] == ["amy", "gus", "amy"]
    assert _get(s3, LANDING_BUCKET, f"processed/{k2}.f2.ndjson") == _line("amy", "www.acme.com", n=4)
    assert pq.read_table(io.BytesIO(_get(s3, LANDING_BUCKET, f"processed/{k3}.f3.parquet"))).column(
        "visitor_id"
    ).to_pylist() == ["ann"]
    assert [
        json.loads(x)["line"]
        for x in _get(s3, LANDING_BUCKET, f"rejected/{k1}.f1.ndjson.gz.rejected.ndjson").splitlines()
    ] == [6]
    assert _get(s3, LANDING_BUCKET, "quarantine/2026/11/27/batch-4.ndjson") == (
        b'{"visitor_id":"amy","site_id":"www.acme.com","x":"\xff\xfe"}\n'
    )
    for key, etag in untouched.items():
        bucket = (
            CLIENT_BUCKET
            if key == seeded["client_key"]
            else (LANDING_BUCKET if key.startswith("quarantine") else BACKUP_BUCKET)
        )
        assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == etag, key
    backup = pq.read_table(io.BytesIO(_get(s3, BACKUP_BUCKET, f"{seeded['acme_h1']}/part-00000.parquet")))
    assert backup.column("visitor_id").to_pylist() == ["amy"]
    manifest = json.loads(_get(s3, BACKUP_BUCKET, f"{seeded['acme_h1']}/_manifest.json"))
    assert manifest["row_count"] == 1 and manifest["files"][0]["rows"] == 1

    # The request: done, filed by the form, its audit trail one row per copy.
    req = db.execute(
        "SELECT request_id, status, visitor_id, visitor_digest, requested_by, reference, rows_deleted "
        "FROM gdpr_erasure_requests"
    ).fetchone()
    rid = req[0]
    assert req[1:3] == ("done", None) and req[4:] == ("DPO of Acme", "TICKET-42", 5)
    assert bytes(req[3]) == hashlib.sha256(f"acme\x1f{V}".encode()).digest()
    trail = {
        (a, b, k): n
        for a, b, k, n in db.execute(
            "SELECT action, bucket, key, lines_removed FROM gdpr_erasure_audit_trail WHERE request_id = %s",
            (rid,),
        )
    }
    # the gzip cut short: deleted whole; the lines counted are those readable before the cut
    assert trail.pop(("removed", LANDING_BUCKET, "quarantine/2026/11/27/batch-5.ndjson.gz")) >= 1
    assert trail == {
        ("rows_deleted", None, "events_log"): 5,
        ("rewritten", BACKUP_BUCKET, f"{seeded['acme_h1']}/part-00000.parquet"): 2,
        ("listed_for_client", CLIENT_BUCKET, seeded["client_key"]): 2,
        (
            "listed_for_client",
            CLIENT_BUCKET,
            seeded["client_key"].replace("part-00000.parquet", "_manifest.json"),
        ): None,
        ("rewritten", LANDING_BUCKET, f"processed/{k1}.f1.ndjson.gz"): 3,
        ("rewritten", LANDING_BUCKET, f"processed/{k2}.f2.ndjson"): 3,
        ("rewritten", LANDING_BUCKET, f"processed/{k3}.f3.parquet"): 1,
        ("rewritten", LANDING_BUCKET, f"rejected/{k1}.f1.ndjson.gz.rejected.ndjson"): 1,
        ("removed", LANDING_BUCKET, f"rejected/{k3}.f3.parquet.rejected.ndjson"): 1,
        ("rewritten", LANDING_BUCKET, "quarantine/2026/11/27/batch-4.ndjson"): 1,
    }
    # Cost follows the visitor: one backup hour listed and one object read (not acme's other hour).
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"requests [{rid}] done" in m and "backup: 1 hour(s), 1 object(s) read" in m for m in messages)
    # The task log prints the audit trail, without the visitor id.
    assert any(f"audit trail of request {rid}" in m and "rejected/" in m for m in messages)
    assert not any(V in m for m in messages if "events_pipeline" in m or "erasure" in m)


def test_reattribution_never_hands_the_client_rows_of_the_erased_visitor(erasure_db, partitions_back, s3):
    """A row of the visitor on a site the client only gets later is deleted, not attributed (tombstone)."""
    db = erasure_db
    add_client(db, "acme", domains=["acme.com"])
    before = datetime.now(UTC) - timedelta(hours=2)
    insert_events(db, [event(before, client_id=None, visitor_id=V, site_id="acme-shop.example")])
    insert_events(db, [event(before, client_id=None, visitor_id="amy", site_id="acme-shop.example")])
    rid = db.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id) VALUES ('acme', %s) RETURNING request_id",
        (V,),
    ).fetchone()[0]
    run_erasure(db, s3, BACKUP_BUCKET, LandingLayout(bucket=LANDING_BUCKET))
    assert db.execute("SELECT status FROM gdpr_erasure_requests").fetchone()[0] == "done"
    assert count(db, "visitor_id = %s", (V,)) == 1  # not acme's site (yet): not acme's data
    # The visitor comes back after the erasure: new data, not covered by the request.
    after = datetime.now(UTC) + timedelta(minutes=1)
    insert_events(db, [event(after, client_id=None, visitor_id=V, site_id="acme-shop.example")])

    db.execute("INSERT INTO client_domains (domain, client_id) VALUES ('acme-shop.example', 'acme')")
    attributed = run_reattribution(db, "secret")

    assert attributed == {"acme": 2}  # amy's row and V's new one
    assert count(db, "visitor_id = %s AND created_at < %s", (V, after)) == 0
    assert count(db, "visitor_id = %s AND client_id = 'acme'", (V,)) == 1
    assert (
        db.execute(
            "SELECT lines_removed, detail FROM gdpr_erasure_audit "
            "WHERE request_id = %s AND detail LIKE 're-attribution%%'",
            (rid,),
        ).fetchone()[0]
        == 1
    )


def test_rows_of_a_load_running_during_the_delete_are_deleted_once_it_commits(
    erasure_db, partitions_back, s3, migrated_db
):
    """A landing file loading while the visitor's rows are deleted: its rows are deleted after its commit."""
    db = erasure_db
    add_client(db, "acme", domains=["acme.com"])
    insert_events(db, [event(datetime.now(UTC) - timedelta(hours=1), visitor_id=V)])
    file_id = db.execute(
        "INSERT INTO landing_files (bucket, key, etag, status, claimed_by, lease_expires_at, "
        "load_started_at) VALUES (%s, 'incoming/late.ndjson', 'e1', 'claimed', 'loader', "
        "now() + interval '30 minutes', clock_timestamp()) RETURNING file_id",
        (LANDING_BUCKET,),
    ).fetchone()[0]
    _put(
        s3,
        LANDING_BUCKET,
        "processed/late.f1.ndjson",
        _line(V, "www.acme.com") + _line("amy", "www.acme.com"),
    )
    # The load: its rows are in, not committed yet.
    load = psycopg.connect(migrated_db.dsn("events"))
    row = event(datetime.now(UTC), visitor_id=V)
    load.execute(
        "INSERT INTO events_log (event_id, event_type, visitor_id, site_id, timestamp, raw_event_data, "
        "client_id, file_id) VALUES (%s, 'pageview', %s, 'www.acme.com', now(), %s, 'acme', %s)",
        (row["event_id"], V, row["raw_event_data"], file_id),
    )
    db.execute("INSERT INTO gdpr_erasure_requests (client_id, visitor_id) VALUES ('acme', %s)", (V,))

    def commit_load_later() -> None:
        time.sleep(1.5)
        load.execute(
            "UPDATE landing_files SET status = 'processed', loaded_at = clock_timestamp(), moved_at = now(), "
            "processed_key = 'processed/late.f1.ndjson' WHERE file_id = %s",
            (file_id,),
        )
        load.commit()

    loader = threading.Thread(target=commit_load_later)
    loader.start()
    run_erasure(db, s3, BACKUP_BUCKET, LandingLayout(bucket=LANDING_BUCKET))
    loader.join()
    load.close()

    assert count(db, "visitor_id = %s", (V,)) == 0
    assert db.execute("SELECT status, rows_deleted FROM gdpr_erasure_requests").fetchone() == ("done", 2)
    assert _get(s3, LANDING_BUCKET, "processed/late.f1.ndjson") == _line("amy", "www.acme.com")


def test_on_a_versioned_bucket_the_older_versions_are_deleted_too(erasure_db, partitions_back, s3):
    """A rewrite adds a version: the older ones, holding the visitor, are deleted."""
    db = erasure_db
    bucket = "versioned-backup"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    try:
        add_client(db, "acme", domains=["acme.com"])
        h1 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        insert_events(db, [event(h1 + timedelta(minutes=1), visitor_id=V, status="exported")])
        key = f"acme/dt={h1:%Y-%m-%d}/hour={h1:%H}/part-00000.parquet"
        s3.put_object(Bucket=bucket, Key=key, Body=_parquet([{"visitor_id": "amy"}]))  # an older export
        s3.put_object(Bucket=bucket, Key=key, Body=_parquet([{"visitor_id": V}, {"visitor_id": "amy"}]))
        db.execute("INSERT INTO gdpr_erasure_requests (client_id, visitor_id) VALUES ('acme', %s)", (V,))

        run_erasure(db, s3, bucket, LandingLayout(bucket=LANDING_BUCKET))

        versions = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
        assert len(versions) == 1 and versions[0]["IsLatest"]
        assert _buckets_holding(s3, V, skip={LANDING_BUCKET, BACKUP_BUCKET}) == []
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert pq.read_table(io.BytesIO(body)).column("visitor_id").to_pylist() == ["amy"]
    finally:
        listing = s3.list_object_versions(Bucket=bucket)
        for entry in (*listing.get("Versions", []), *listing.get("DeleteMarkers", [])):
            s3.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])


def test_backup_hours_whose_rows_retention_deleted_need_the_whole_history_pass(
    erasure_db, partitions_back, s3
):
    """Only hours of rows still in events_log are known; the opt-in pass reads the client's whole backup."""
    db = erasure_db
    add_client(db, "acme", domains=["acme.com"])
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    old, recent = now - timedelta(days=200), now - timedelta(hours=3)  # old: its rows went with retention
    insert_events(db, [event(recent + timedelta(minutes=1), visitor_id=V, status="exported")])
    keys = {}
    for hour in (old, recent):
        keys[hour] = f"acme/dt={hour:%Y-%m-%d}/hour={hour:%H}/part-00000.parquet"
        s3.put_object(
            Bucket=BACKUP_BUCKET, Key=keys[hour], Body=_parquet([{"visitor_id": V}, {"visitor_id": "a"}])
        )
    db.execute("INSERT INTO gdpr_erasure_requests (client_id, visitor_id) VALUES ('acme', %s)", (V,))

    run_erasure(db, s3, BACKUP_BUCKET, LandingLayout(bucket=LANDING_BUCKET))
    assert _buckets_holding(s3, V, skip=set()) == [f"s3://{BACKUP_BUCKET}/{keys[old]}"]  # the default's limit

    db.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id, whole_backup) VALUES ('acme', %s, true)",
        (V,),
    )
    run_erasure(db, s3, BACKUP_BUCKET, LandingLayout(bucket=LANDING_BUCKET))
    assert _buckets_holding(s3, V, skip=set()) == []
    done = db.execute("SELECT whole_backup_done_at IS NOT NULL FROM gdpr_erasure_requests WHERE whole_backup")
    assert done.fetchone()[0] is True
