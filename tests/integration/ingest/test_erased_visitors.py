"""Ingest never brings back an erased visitor's older events (contract §6.5), through ``dag.test()``.

A done erasure request leaves a tombstone (client, visitor digest, erased_through). A landing
file that arrives later with the visitor's older events: those lines are nowhere afterwards
(``events_log``, ``rejected/``, ``processed/``, older object versions), the visitor's newer
event and everyone else's are loaded, the file's counts add up, the audit trail has the
file; a re-run, a crash at any checkpoint and a replay end the same.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from events_pipeline.common import failpoints
from events_pipeline.privacy.visitor_digest import visitor_digest
from tests.conftest import LANDING_BUCKET, task_states
from tests.integration.ingest.conftest import count, events, keys, ndjson, put, registry

ERASED_THROUGH = datetime(2026, 11, 27, 12, tzinfo=UTC)
BEFORE, AFTER = "2026-11-27T10:00:00Z", "2026-11-27T13:00:00Z"
GONE = "visitor-gone-7f3a"
#: Text only the dropped lines hold: found in no object and no row afterwards.
MARK = "before-the-erasure"


@pytest.fixture(autouse=True)
def _no_tombstones(db: Any) -> None:
    """Tombstones are not among the tables ``clean_tables`` empties (requests and audit are)."""
    db.execute("TRUNCATE gdpr_erasure_tombstones")


def _tombstone(db: Any, client_id: str, visitor_id: str) -> int:
    """File a done request and its tombstone as the erasure leaves them (the id cleared)."""
    digest = visitor_digest(client_id, visitor_id)
    (request_id,) = db.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id, status, visitor_digest, processed_at) "
        "VALUES (%s, NULL, 'done', %s, %s) RETURNING request_id",
        (client_id, digest, ERASED_THROUGH),
    ).fetchone()
    db.execute(
        "INSERT INTO gdpr_erasure_tombstones (client_id, visitor_digest, erased_through, request_id) "
        "VALUES (%s, %s, %s, %s)",
        (client_id, digest, ERASED_THROUGH, request_id),
    )
    return request_id


def _ev(n: int, visitor: str, ts: str, **changes: Any) -> dict[str, Any]:
    return {
        "event_type": "pageview",
        "timestamp": ts,
        "site_id": "www.acme.com",
        "url": f"https://www.acme.com/p{n}",
        "visitor_id": visitor,
        "n": n,
        **changes,
    }


#: The file: lines 1, 5 and 7 are the erased visitor's from before the erasure (5 is also invalid).
LINES: list[Any] = [
    _ev(1, GONE, BEFORE, note=MARK),
    _ev(2, "amy", BEFORE),
    _ev(3, GONE, AFTER),  # came back after the erasure: loaded
    _ev(4, GONE, BEFORE, site_id="globex.de", url="https://globex.de/", ip_address="35.148.214.37"),
    _ev(5, GONE, BEFORE, event_type="", note=MARK),
    _ev(6, "bob", BEFORE, event_type=""),  # rejected
    "",
    _ev(8, GONE, BEFORE, note=MARK),
]
DROPPED = [1, 5, 8]


def _body(lines: list[Any]) -> bytes:
    return ndjson(lines)


def _objects_holding(s3: Any, needle: bytes) -> list[str]:
    """Keys (and older versions) of the landing bucket whose bytes, decompressed, hold ``needle``."""
    found = []
    listing = s3.list_object_versions(Bucket=LANDING_BUCKET)
    for entry in listing.get("Versions", []):
        body = s3.get_object(Bucket=LANDING_BUCKET, Key=entry["Key"], VersionId=entry["VersionId"])["Body"]
        data = body.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        if entry["Key"].endswith(".parquet"):
            data = orjson.dumps(pq.read_table(io.BytesIO(data)).to_pylist())
        if needle in data:
            found.append(f"{entry['Key']}@{entry['VersionId']}")
    return found


def _assert_erased_lines_gone(db: Any, s3: Any, request_id: int, key: str) -> dict[str, Any]:
    """The common end state of a load of LINES: counts add up, nothing of the dropped lines is left."""
    ns = sorted(r["raw_event_data"]["n"] for r in events(db))
    assert ns == [2, 3, 4]
    assert {r["visitor_id"] for r in events(db) if r["raw_event_data"]["n"] == 3} == {GONE}
    assert db.execute("SELECT count(DISTINCT event_id) FROM events_log").fetchone()[0] == 3
    (row,) = registry(db)
    assert row["status"] == "processed"
    assert (row["rows_loaded"], row["rows_rejected"], row["erased_lines"], row["lines_blank"]) == (3, 1, 3, 1)
    assert row["rows_loaded"] + row["rows_rejected"] + row["erased_lines"] + row["lines_blank"] == len(LINES)
    assert row["erased_line_numbers"] == DROPPED
    audit = db.execute(
        "SELECT request_id, bucket, key, action, lines_removed FROM gdpr_erasure_audit"
    ).fetchall()
    assert audit == [(request_id, LANDING_BUCKET, key, "lines_dropped_at_ingest", 3)]
    marked = db.execute("SELECT count(*) FROM events_log WHERE raw_event_data::text LIKE %s", (f"%{MARK}%",))
    assert marked.fetchone()[0] == 0
    assert count(db) == 3
    assert _objects_holding(s3, MARK.encode()) == []
    assert keys(s3, "incoming/") == []
    return row


@pytest.mark.parametrize("name", ["late.ndjson", "late.jsonl.gz"])
def test_older_events_of_an_erased_visitor_are_dropped_everywhere(
    name: str, ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3 = ingest_env
    request_id = _tombstone(db, "acme", GONE)
    _tombstone(db, "initech", GONE)  # another client's tombstone of the same id changes nothing here
    key = put(s3, f"backlog/{name}", _body(LINES))

    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    row = _assert_erased_lines_gone(db, s3, request_id, key)
    rejected = s3.get_object(Bucket=LANDING_BUCKET, Key=row["rejected_key"])["Body"].read()
    assert [orjson.loads(x)["line"] for x in rejected.splitlines()] == [6]

    # processed/: the file without the dropped lines, every other line byte for byte, same format
    data = s3.get_object(Bucket=LANDING_BUCKET, Key=row["processed_key"])["Body"].read()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    original = _body(LINES).split(b"\n")
    assert data.split(b"\n") == [line for n, line in enumerate(original, 1) if n not in DROPPED]

    # a second run loads nothing again
    assert run_dag("events_ingest").state == "success"
    _assert_erased_lines_gone(db, s3, request_id, key)


def test_without_tombstones_of_the_files_clients_nothing_is_dropped(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3 = ingest_env
    _tombstone(db, "initech", GONE)
    put(s3, "backlog/plain.ndjson", _body(LINES))
    assert run_dag("events_ingest").state == "success"
    (row,) = registry(db)
    assert (row["rows_loaded"], row["rows_rejected"], row["erased_lines"]) == (5, 2, 0)
    assert row["erased_line_numbers"] is None
    assert db.execute("SELECT count(*) FROM gdpr_erasure_audit").fetchone()[0] == 0
    body = s3.get_object(Bucket=LANDING_BUCKET, Key=row["processed_key"])["Body"].read()
    assert body == _body(LINES)


class _CrashError(RuntimeError):
    pass


@pytest.mark.parametrize("point", failpoints.POINTS)
def test_a_crash_at_any_step_ends_the_same(point: str, ingest_env: Any, db: Any, run_dag: Any) -> None:
    s3 = ingest_env
    request_id = _tombstone(db, "acme", GONE)
    key = put(s3, "backlog/crash.ndjson.gz", _body(LINES))
    fired: list[str] = []

    def crash(at: str) -> None:
        if not fired:
            fired.append(at)
            raise _CrashError(f"simulated crash at {at}")

    with failpoints.inject(point, crash):
        dr = run_dag("events_ingest")
    assert fired
    assert dr.state == "success", task_states(dr)
    _assert_erased_lines_gone(db, s3, request_id, key)


def test_a_move_that_never_finishes_is_finished_by_the_next_run(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    """Every try dies mid-move: a later run (the lease expired) ends with the filtered copy."""
    s3 = ingest_env
    request_id = _tombstone(db, "acme", GONE)
    key = put(s3, "backlog/later.ndjson", _body(LINES))

    def crash(at: str) -> None:
        raise _CrashError(f"simulated crash at {at}")

    with failpoints.inject("during_move", crash):
        assert run_dag("events_ingest").state == "failed"
    (row,) = registry(db)
    assert row["status"] == "loaded" and keys(s3, "incoming/") == [key]
    db.execute("UPDATE landing_files SET lease_expires_at = now() - interval '1 minute'")
    assert run_dag("events_ingest").state == "success"
    _assert_erased_lines_gone(db, s3, request_id, key)


@pytest.fixture
def versioned_landing(ingest_env: Any) -> Iterator[Any]:
    """The landing bucket with versioning on; every version removed afterwards. Yields boto3."""
    s3 = ingest_env
    s3.put_bucket_versioning(Bucket=LANDING_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield s3
    listing = s3.list_object_versions(Bucket=LANDING_BUCKET)
    for entry in (*listing.get("Versions", []), *listing.get("DeleteMarkers", [])):
        s3.delete_object(Bucket=LANDING_BUCKET, Key=entry["Key"], VersionId=entry["VersionId"])


def test_on_a_versioned_landing_bucket_no_version_keeps_the_lines(
    versioned_landing: Any, db: Any, run_dag: Any
) -> None:
    s3 = versioned_landing
    request_id = _tombstone(db, "acme", GONE)
    key = put(s3, "backlog/versioned.ndjson", _body(LINES))
    assert run_dag("events_ingest").state == "success"
    _assert_erased_lines_gone(db, s3, request_id, key)
    (row,) = registry(db)
    versions = s3.list_object_versions(Bucket=LANDING_BUCKET, Prefix=row["processed_key"])
    assert len(versions.get("Versions", [])) == 1


def test_parquet_rows_of_the_erased_visitor_are_dropped(ingest_env: Any, db: Any, run_dag: Any) -> None:
    s3 = ingest_env
    request_id = _tombstone(db, "acme", GONE)
    rows = [
        {"event_type": "pageview", "timestamp": ts, "site_id": "acme.com", "visitor_id": v, "url": u}
        for ts, v, u in [
            (BEFORE, GONE, f"https://acme.com/{MARK}"),
            (BEFORE, "amy", "https://acme.com/a"),
            (AFTER, GONE, "https://acme.com/back"),
        ]
    ]
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out, compression="snappy")
    key = "incoming/backlog/late.parquet"
    s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=out.getvalue())
    assert run_dag("events_ingest").state == "success"
    (row,) = registry(db)
    assert (row["rows_loaded"], row["rows_rejected"], row["erased_lines"]) == (2, 0, 1)
    assert db.execute("SELECT request_id, key FROM gdpr_erasure_audit").fetchall() == [(request_id, key)]
    data = s3.get_object(Bucket=LANDING_BUCKET, Key=row["processed_key"])["Body"].read()
    written = pq.ParquetFile(io.BytesIO(data))
    assert written.metadata.row_group(0).column(0).compression == "SNAPPY"
    assert written.read().to_pylist() == rows[1:]
    assert _objects_holding(s3, MARK.encode()) == []


def test_a_replay_drops_the_erased_visitors_lines_the_same_way(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    """A file quarantined before the erasure, replayed after it: its older lines of the visitor stay out."""
    s3 = ingest_env
    body = _body(LINES)
    put(s3, "backlog/broken.ndjson.gz", gzip.compress(body)[:-9], gz=False)  # cut short: quarantined
    assert run_dag("events_ingest").state == "success"
    (original,) = registry(db)
    assert original["status"] == "quarantined"
    request_id = _tombstone(db, "acme", GONE)
    s3.put_object(Bucket=LANDING_BUCKET, Key="fixes/broken.ndjson.gz", Body=gzip.compress(body))

    dr = run_dag(
        "events_replay",
        run_conf={
            "mode": "quarantined_file",
            "file_id": original["file_id"],
            "fixed_key": "fixes/broken.ndjson.gz",
        },
    )
    assert dr.state == "success", task_states(dr)
    replay = registry(db)[1]
    assert (replay["rows_loaded"], replay["rows_rejected"], replay["erased_lines"]) == (3, 1, 3)
    assert sorted(r["raw_event_data"]["n"] for r in events(db)) == [2, 3, 4]
    audit = db.execute("SELECT request_id, key, lines_removed FROM gdpr_erasure_audit").fetchall()
    assert audit == [(request_id, replay["key"], 3)]
    processed = gzip.decompress(
        s3.get_object(Bucket=LANDING_BUCKET, Key=replay["processed_key"])["Body"].read()
    )
    assert MARK.encode() not in processed
    assert len(processed.split(b"\n")) == len(body.split(b"\n")) - len(DROPPED)


@pytest.mark.parametrize("erasure", ["rewrote", "deleted"])
def test_an_identical_reupload_never_brings_back_what_an_erasure_removed(
    erasure: str, ingest_env: Any, db: Any, run_dag: Any
) -> None:
    """F loaded before the erasure; the erasure rewrote (or deleted) its processed/ copy; F comes again."""
    s3 = ingest_env
    body = _body(LINES)
    key = put(s3, "backlog/again.ndjson", body)
    assert run_dag("events_ingest").state == "success"
    (row,) = registry(db)
    processed = row["processed_key"]
    assert s3.get_object(Bucket=LANDING_BUCKET, Key=processed)["Body"].read() == body
    loaded = count(db)
    # the erasure as it leaves the landing bucket: processed/ without the visitor's lines, or gone
    _tombstone(db, "acme", GONE)
    without = b"\n".join(line for n, line in enumerate(body.split(b"\n"), 1) if n not in DROPPED)
    if erasure == "rewrote":
        s3.put_object(Bucket=LANDING_BUCKET, Key=processed, Body=without)
    else:
        s3.delete_object(Bucket=LANDING_BUCKET, Key=processed)
    rejected = s3.get_object(Bucket=LANDING_BUCKET, Key=row["rejected_key"])["Body"].read()
    kept = b"".join(x for x in rejected.splitlines(keepends=True) if MARK.encode() not in x)
    s3.put_object(Bucket=LANDING_BUCKET, Key=row["rejected_key"], Body=kept)
    assert _objects_holding(s3, MARK.encode()) == []

    assert put(s3, "backlog/again.ndjson", body) == key  # the same bytes under the same key
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)

    assert _objects_holding(s3, MARK.encode()) == []
    assert keys(s3, "incoming/") == []
    if erasure == "rewrote":
        assert s3.get_object(Bucket=LANDING_BUCKET, Key=processed)["Body"].read() == without
    else:
        assert keys(s3, "processed/") == []
    # nothing loaded twice, the registry as it was
    assert count(db) == loaded
    assert db.execute("SELECT count(DISTINCT event_id) FROM events_log").fetchone()[0] == loaded
    assert registry(db) == [row]


def test_an_identical_reupload_on_a_versioned_bucket_leaves_no_version(
    versioned_landing: Any, db: Any, run_dag: Any
) -> None:
    s3 = versioned_landing
    request_id = _tombstone(db, "acme", GONE)
    key = put(s3, "backlog/versioned-again.ndjson", _body(LINES))
    assert run_dag("events_ingest").state == "success"
    _assert_erased_lines_gone(db, s3, request_id, key)
    put(s3, "backlog/versioned-again.ndjson", _body(LINES))
    assert run_dag("events_ingest").state == "success"
    _assert_erased_lines_gone(db, s3, request_id, key)
    listing = s3.list_object_versions(Bucket=LANDING_BUCKET, Prefix="incoming/")
    assert listing.get("Versions", []) == []


def test_an_identical_reupload_of_a_quarantined_file_is_not_put_back(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    """The erasure deleted the quarantined copy holding the visitor: the same bytes again are deleted."""
    s3 = ingest_env
    body = _body(LINES)  # not gzip under a .gz name: unreadable, quarantined whole
    key = put(s3, "backlog/broken.ndjson.gz", body, gz=False)
    assert run_dag("events_ingest").state == "success"
    (row,) = registry(db)
    assert row["status"] == "quarantined"
    quarantined = keys(s3, "quarantine/")
    assert f"quarantine/{key.removeprefix('incoming/')}" in quarantined
    s3.delete_object(Bucket=LANDING_BUCKET, Key=f"quarantine/{key.removeprefix('incoming/')}")
    assert _objects_holding(s3, MARK.encode()) == []

    put(s3, "backlog/broken.ndjson.gz", body, gz=False)
    assert run_dag("events_ingest").state == "success"
    assert _objects_holding(s3, MARK.encode()) == []
    assert keys(s3, "incoming/") == []
    assert count(db) == 0
    assert registry(db) == [row]
