"""Moves on the S3 server (contract §2.1, §2.7): large objects, and a key written again.

- an object at or above ``landing.MULTIPART_COPY_THRESHOLD`` is moved with S3's
  multipart copy (``CopyObject`` stops at 5 GiB), keeping the version check;
- each version of a key keeps its own ``processed/`` and ``rejected/`` objects;
- a move never deletes a newer version of the key that it did not copy, whether the
  key is written again before the copy or between the copy and the delete.
"""

from __future__ import annotations

import gzip
from typing import Any

from devtools.demo_data import iter_events
from events_pipeline.common import failpoints
from events_pipeline.ingest import landing
from tests.conftest import LANDING_BUCKET, task_states
from tests.integration.ingest.conftest import count, keys, ndjson, put, read_ndjson, registry

BAD = '{"event_type": "", "timestamp": "2026-11-27T10:00:00Z", "site_id": "acme.com", "v": "%s"}'


def _body(version: str, seed: int) -> bytes:
    return ndjson([*iter_events(4, seed=seed), BAD % version])


def _object(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=LANDING_BUCKET, Key=key)["Body"].read()


def test_a_large_object_is_moved_with_a_multipart_copy(
    ingest_env: Any, db: Any, run_dag: Any, monkeypatch: Any
) -> None:
    s3 = ingest_env
    monkeypatch.setattr(landing, "MULTIPART_COPY_THRESHOLD", 1024)
    body = ndjson(list(iter_events(50, seed=3)))
    put(s3, "big/a.ndjson.gz", body)
    small = ndjson(list(iter_events(1, seed=4)))
    put(s3, "big/small.ndjson", small)
    assert len(small) < 1024 < len(gzip.compress(body))
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    rows = {r["key"]: r for r in registry(db)}
    big, little = rows["incoming/big/a.ndjson.gz"], rows["incoming/big/small.ndjson"]
    assert keys(s3, "incoming/") == [] and count(db) == 51
    head = s3.head_object(Bucket=LANDING_BUCKET, Key=big["processed_key"])
    assert head["ETag"].strip('"').endswith("-1")  # a multipart object: UploadPartCopy was used
    assert gzip.decompress(_object(s3, big["processed_key"])) == body
    assert "-" not in s3.head_object(Bucket=LANDING_BUCKET, Key=little["processed_key"])["ETag"]


def test_each_version_of_a_key_keeps_its_own_processed_and_rejected_objects(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3 = ingest_env
    first, second = _body("one", 5), _body("two", 6)
    put(s3, "same/k.ndjson", first)
    assert run_dag("events_ingest").state == "success"
    put(s3, "same/k.ndjson", second)  # the collector writes the same key again, new bytes
    assert run_dag("events_ingest").state == "success"
    one, two = registry(db)
    assert (one["status"], two["status"]) == ("processed", "processed") and count(db) == 8
    assert keys(s3, "processed/") == sorted([one["processed_key"], two["processed_key"]])
    assert _object(s3, one["processed_key"]) == first and _object(s3, two["processed_key"]) == second
    assert keys(s3, "rejected/") == sorted([one["rejected_key"], two["rejected_key"]])
    assert [r["raw"] for r in read_ndjson(s3, one["rejected_key"])] == [BAD % "one"]
    assert [r["raw"] for r in read_ndjson(s3, two["rejected_key"])] == [BAD % "two"]
    assert one["processed_key"] == f"processed/same/k.f{one['file_id']}.ndjson"
    assert two["rejected_key"] == f"rejected/same/k.f{two['file_id']}.ndjson.rejected.ndjson"


def test_a_newer_version_written_during_the_move_is_not_deleted(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3 = ingest_env
    first, second = _body("one", 7), _body("two", 8)
    put(s3, "race/k.ndjson", first)

    def overwrite(key: str) -> None:  # between the copy of version one and its delete
        put(s3, "race/k.ndjson", second)

    with failpoints.inject("during_move", overwrite):
        assert run_dag("events_ingest").state == "success"
    (one,) = registry(db)
    assert one["status"] == "processed" and "overwritten by a newer version" in one["error"]
    assert _object(s3, one["processed_key"]) == first
    assert _object(s3, "incoming/race/k.ndjson") == second  # not deleted

    assert run_dag("events_ingest").state == "success"
    one, two = registry(db)
    assert two["status"] == "processed" and _object(s3, two["processed_key"]) == second
    assert keys(s3, "incoming/") == [] and count(db) == 8


def test_a_newer_version_written_before_the_copy_is_neither_moved_nor_deleted(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3 = ingest_env
    first, second = _body("one", 9), _body("two", 10)
    put(s3, "race/k.ndjson", first)

    def overwrite(key: str) -> None:  # version one is loaded and committed; its move comes next
        put(s3, "race/k.ndjson", second)

    with failpoints.inject("after_commit", overwrite):
        assert run_dag("events_ingest").state == "success"
    (one,) = registry(db)
    assert one["status"] == "processed" and "not moved" in one["error"]
    assert keys(s3, "processed/") == []  # nothing of version two stands for version one
    assert _object(s3, "incoming/race/k.ndjson") == second

    assert run_dag("events_ingest").state == "success"
    one, two = registry(db)
    assert _object(s3, two["processed_key"]) == second and count(db) == 8
    assert keys(s3, "incoming/") == []


def test_deleting_a_reupload_removes_only_its_version(ingest_env: Any) -> None:
    """``landing_rewrite.delete_version`` (identical re-uploads): a newer version of the key stays."""
    from events_pipeline.ingest import landing_rewrite

    s3 = ingest_env
    first, second = _body("one", 11), _body("two", 12)
    key = put(s3, "again/k.ndjson", first)
    etag = s3.head_object(Bucket=LANDING_BUCKET, Key=key)["ETag"].strip('"')
    put(s3, "again/k.ndjson", second)
    assert landing_rewrite.delete_version(s3, LANDING_BUCKET, key, etag) == "replaced"
    assert _object(s3, key) == second
    put(s3, "again/k.ndjson", first)
    assert landing_rewrite.delete_version(s3, LANDING_BUCKET, key, etag) == "deleted"
    assert keys(s3, "incoming/") == []
    assert landing_rewrite.delete_version(s3, LANDING_BUCKET, key, etag) == "already_gone"
