"""Landing-object expiry: processed/, rejected/ and quarantine/ copies are deleted after their keep days."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from events_pipeline.maintenance.landing_expiry import run_landing_expiry
from tests.conftest import LANDING_BUCKET, task_states

KEEP = {"processed/": 7, "rejected/": 30, "quarantine/": 30}
OBJECTS = {
    "incoming/2026/11/27/new.ndjson": b'{"event_type":"a"}\n',
    "processed/2026/11/27/a.ndjson": b'{"event_type":"a"}\n' * 10,
    "processed/b.ndjson.gz": b"\x1f\x8b" + b"0" * 98,
    "rejected/2026/11/27/a.ndjson.rejected.ndjson": b'{"line":1,"reason":"x","raw":"{"}\n',
    "quarantine/2026/11/27/bad.csv": b"a,b\n",
    "quarantine/2026/11/27/bad.csv.error.json": b'{"kind":"unsupported_format"}',
    "elsewhere/keep.txt": b"not the pipeline's",
}


def _put_all(s3) -> None:
    for key, body in OBJECTS.items():
        s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=body)


def _keys(s3) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=LANDING_BUCKET)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _under(prefix: str) -> set[str]:
    return {k for k in OBJECTS if k.startswith(prefix)}


def test_each_prefix_is_kept_its_own_days_then_deleted(s3):
    _put_all(s3)
    now = datetime.now(UTC)

    results = run_landing_expiry(s3, LANDING_BUCKET, KEEP, now=now + timedelta(days=1))
    assert _keys(s3) == set(OBJECTS)  # nothing old enough yet
    assert [(r.prefix, r.deleted, r.kept) for r in results] == [
        ("processed/", 0, 2),
        ("rejected/", 0, 1),
        ("quarantine/", 0, 2),
    ]

    results = run_landing_expiry(s3, LANDING_BUCKET, KEEP, now=now + timedelta(days=8))
    assert _keys(s3) == set(OBJECTS) - _under("processed/")
    processed = results[0]
    assert (processed.deleted, processed.kept) == (2, 0)
    assert processed.deleted_bytes == sum(len(OBJECTS[k]) for k in _under("processed/"))

    results = run_landing_expiry(s3, LANDING_BUCKET, KEEP, now=now + timedelta(days=31))
    # the backlog and everything outside the three prefixes stay
    assert _keys(s3) == {"incoming/2026/11/27/new.ndjson", "elsewhere/keep.txt"}
    deleted = [(r.prefix, r.deleted) for r in results]
    assert deleted == [("processed/", 0), ("rejected/", 1), ("quarantine/", 2)]

    # idempotent: nothing left to do
    again = run_landing_expiry(s3, LANDING_BUCKET, KEEP, now=now + timedelta(days=31))
    assert sum(r.deleted for r in again) == 0


def test_deletes_are_bounded_per_run_and_the_next_run_goes_on(s3):
    for i in range(5):
        s3.put_object(Bucket=LANDING_BUCKET, Key=f"processed/f{i}.ndjson", Body=b"{}\n")
    later = datetime.now(UTC) + timedelta(days=8)

    done = [run_landing_expiry(s3, LANDING_BUCKET, {"processed/": 7}, now=later, max_deletes=2)[0]]
    done.append(run_landing_expiry(s3, LANDING_BUCKET, {"processed/": 7}, now=later, max_deletes=2)[0])
    done.append(run_landing_expiry(s3, LANDING_BUCKET, {"processed/": 7}, now=later, max_deletes=2)[0])

    assert [(r.deleted, r.more_due) for r in done] == [(2, True), (2, True), (1, False)]
    assert not _keys(s3)


def test_a_negative_keep_days_turns_expiry_off(s3):
    _put_all(s3)
    results = run_landing_expiry(
        s3, LANDING_BUCKET, {"processed/": -1}, now=datetime.now(UTC) + timedelta(days=365)
    )
    assert results[0].deleted == 0 and results[0].cutoff is None
    assert _keys(s3) == set(OBJECTS)


def test_events_maintenance_expires_landing_objects(maint_db, partitions_back, s3, run_dag, monkeypatch):
    """Through the DAG: processed/ kept 0 days (Variable) goes; rejected/, quarantine/ (30 days) stay."""
    _put_all(s3)
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_LANDING_KEEP_PROCESSED_DAYS", "0")

    dr = run_dag("events_maintenance", logical_date=datetime.now(UTC))

    assert dr.state == "success", task_states(dr)
    assert task_states(dr)["expire_landing_objects"] == "success"
    assert _keys(s3) == set(OBJECTS) - _under("processed/")
    logged = {
        r[0]: (r[1], r[2])
        for r in maint_db.execute(
            "SELECT partition_name, rows_affected, details FROM maintenance_log WHERE step = 'landing_expiry'"
        )
    }
    assert set(logged) == {"processed/", "rejected/", "quarantine/"}
    rows, details = logged["processed/"]
    assert rows == 2 and details["keep_days"] == 0
    assert details["deleted_bytes"] == sum(len(OBJECTS[k]) for k in _under("processed/"))
    assert logged["rejected/"][1]["kept"] == 1 and logged["rejected/"][1]["keep_days"] == 30
    assert logged["quarantine/"][1]["kept"] == 2

    # a second run has nothing left to delete
    dr = run_dag("events_maintenance", logical_date=datetime.now(UTC))
    assert dr.state == "success"
    assert _keys(s3) == set(OBJECTS) - _under("processed/")


def test_the_documented_lifecycle_rule_matches_the_defaults():
    """docs/maintenance.md gives the S3 lifecycle rule equivalent to the pipeline's expiry."""
    from events_pipeline.common.settings import SETTINGS

    text = (Path(__file__).resolve().parents[3] / "docs" / "maintenance.md").read_text()
    block = re.search(r"```json\n(\{\s*\"Rules\".*?)\n```", text, flags=re.DOTALL)
    assert block, "docs/maintenance.md lacks the lifecycle rule (a ```json block with Rules)"
    rules = {r["Filter"]["Prefix"]: r for r in json.loads(block[1])["Rules"] if r["Filter"].get("Prefix")}
    for prefix, setting in (
        ("processed/", "events_landing_keep_processed_days"),
        ("rejected/", "events_landing_keep_rejected_days"),
        ("quarantine/", "events_landing_keep_quarantine_days"),
    ):
        assert rules[prefix]["Expiration"]["Days"] == SETTINGS[setting].default, prefix
        assert rules[prefix]["Status"] == "Enabled"
        assert rules[prefix]["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1
    assert "incoming/" not in rules
