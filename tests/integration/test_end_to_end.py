"""The whole pipeline on demo data: ingest -> export -> billing -> maintenance, re-runs included.

Each DAG is run for real with ``dag.test()`` against the session's PostgreSQL and
S3 server; nothing is inserted behind the pipeline's back except client
configuration and landing files, as an operator and the collector would.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest

from devtools.demo_data import BAD_LINES, DEMO_CLIENTS, iter_events, ndjson_bytes
from tests.conftest import BACKUP_BUCKET, LANDING_BUCKET, task_states


@pytest.fixture
def demo(services: None, clean_tables: None, s3: Any, db: Any) -> Any:
    """The demo clients with their own buckets, and three landing files (one with bad lines)."""
    for client in DEMO_CLIENTS:
        bucket = f"{client.client_id}-analytics"
        s3.create_bucket(Bucket=bucket)
        db.execute(
            "INSERT INTO clients (client_id, name, privacy_level, export_bucket, export_prefix) "
            "VALUES (%s, %s, %s, %s, %s)",
            (client.client_id, client.name, client.privacy_level, bucket, f"events/{client.client_id}"),
        )
        for domain in client.domains:
            db.execute(
                "INSERT INTO client_domains (domain, client_id) VALUES (%s, %s)", (domain, client.client_id)
            )
    s3.put_object(
        Bucket=LANDING_BUCKET,
        Key="incoming/c1/a.ndjson.gz",
        Body=ndjson_bytes(list(iter_events(300, seed=1))),
    )
    s3.put_object(
        Bucket=LANDING_BUCKET, Key="incoming/c1/b.jsonl.gz", Body=ndjson_bytes(list(iter_events(200, seed=2)))
    )
    good = [json.dumps(e) for e in iter_events(40, seed=3)]
    mixed = "\n".join(good[:20] + list(BAD_LINES) + good[20:]) + "\n"
    s3.put_object(Bucket=LANDING_BUCKET, Key="incoming/c2/mixed.ndjson", Body=mixed.encode())
    return s3


def _manifest(s3: Any, bucket: str, folder: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=f"{folder}/_manifest.json")["Body"].read())


def _table(s3: Any, bucket: str, folder: str, manifest: dict[str, Any]) -> Any:
    import pyarrow as pa

    parts = []
    for f in manifest["files"]:
        key = f["key"] if "/" in f["key"] else f"{folder}/{f['key']}"
        parts.append(pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())))
    return pa.concat_tables(parts) if parts else None


def test_demo_data_flows_from_landing_to_every_client_and_billing(demo: Any, db: Any, run_dag: Any) -> None:
    s3 = demo
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    loaded = dict(
        db.execute("SELECT coalesce(client_id, ''), count(*) FROM events_log GROUP BY 1").fetchall()
    )
    assert sum(loaded.values()) == 540
    assert set(loaded) == {"acme", "globex", "initech", ""}
    assert db.execute("SELECT sum(rows_rejected) FROM landing_files").fetchone()[0] == len(BAD_LINES)

    # Export the hour the rows were loaded in (dag.test covers the hour ENDING at its logical date).
    created = db.execute("SELECT min(created_at), max(created_at) FROM events_log").fetchone()
    hour = created[0].replace(minute=0, second=0, microsecond=0)
    if created[1] >= hour + timedelta(hours=1):  # the load straddled an hour: export both
        pytest.skip("load straddled an hour boundary; the per-hour assertions below assume one hour")
    dr = run_dag("events_export", logical_date=hour + timedelta(hours=1))
    assert dr.state == "success", task_states(dr)
    folder_of = {c.client_id: f"events/{c.client_id}/dt={hour:%Y-%m-%d}/hour={hour:%H}" for c in DEMO_CLIENTS}
    shas = {}
    for client in DEMO_CLIENTS:
        cid = client.client_id
        manifest = _manifest(s3, f"{cid}-analytics", folder_of[cid])
        assert manifest["row_count"] == loaded[cid]
        table = _table(s3, f"{cid}-analytics", folder_of[cid], manifest)
        assert set(table.column("client_id").to_pylist()) == {cid}
        backup_folder = f"{cid}/dt={hour:%Y-%m-%d}/hour={hour:%H}"
        assert _table(s3, BACKUP_BUCKET, backup_folder, _manifest(s3, BACKUP_BUCKET, backup_folder)).equals(
            table
        )
        if client.privacy_level == "gdpr":  # every exported IP is a /24 or /48 network
            for ip, raw in zip(
                table.column("ip_address").to_pylist(),
                table.column("raw_event_data").to_pylist(),
                strict=True,
            ):
                assert ip is None or ip.endswith((".0", "::")), ip
                assert json.loads(raw).get("ip_address") in (None, ip)
        shas[cid] = [f["sha256"] for f in manifest["files"]]
    status = dict(db.execute("SELECT export_status, count(*) FROM events_log GROUP BY 1").fetchall())
    assert status == {"exported": 540 - loaded[""], "pending": loaded[""]}

    # Re-running the ingest loads nothing; re-running the hour rewrites identical objects.
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    assert db.execute("SELECT count(*) FROM events_log").fetchone()[0] == 540
    dr = run_dag("events_export", logical_date=hour + timedelta(hours=1))
    assert dr.state == "success", task_states(dr)
    for cid, before in shas.items():
        assert [f["sha256"] for f in _manifest(s3, f"{cid}-analytics", folder_of[cid])["files"]] == before

    # Billing for the day: received and exported per client, from tables retention never touches.
    day = hour.replace(hour=0)
    dr = run_dag("events_billing", logical_date=day + timedelta(days=1))
    assert dr.state == "success", task_states(dr)
    billed = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT client_id, events_received, events_exported FROM billing_daily WHERE day = %s",
            (day.date(),),
        ).fetchall()
    }
    for client in DEMO_CLIENTS:
        assert billed[client.client_id] == (loaded[client.client_id], loaded[client.client_id])

    # Daily maintenance keeps everything (nothing is old enough) and succeeds twice.
    for _ in range(2):
        dr = run_dag("events_maintenance", logical_date=day + timedelta(days=1))
        assert dr.state == "success", task_states(dr)
    assert db.execute("SELECT count(*) FROM events_log").fetchone()[0] == 540
