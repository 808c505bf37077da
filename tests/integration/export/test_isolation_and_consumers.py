"""Tenant isolation, a failing client beside healthy ones, large hours in parts, and consumers."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import task_states
from tests.integration.export.conftest import (
    HOUR,
    add_client,
    folder,
    insert_rows,
    list_keys,
    make_rows,
    read_hour,
    run_hour,
    spread,
    states_by_client,
)


def _states_by_client(dr) -> dict[str, str]:
    return states_by_client(dr)


def test_one_client_cannot_write_into_another_clients_space(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", "exports/acme")
    # Same bucket, prefix inside acme's folder: its files would show up in acme's listing.
    add_client(db, "intruder", "client-acme", "exports/acme/dt-tricks")
    # Path tricks that never pass validation.
    add_client(db, "dotdot", "client-globex", "globex/../acme")
    add_client(db, "dtfake", "client-globex", "x/dt=2026-01-01")
    # Pointing an export at the backup bucket (every client's data) is refused.
    add_client(db, "backupper", "test-backup", "acme")
    for cid in ("acme", "intruder", "dotdot", "dtfake", "backupper"):
        insert_rows(db, make_rows(cid, spread(HOUR, 3), seed=len(cid)))

    dr = run_hour(run_dag, HOUR)
    assert dr.state == "failed"
    assert _states_by_client(dr) == {
        "acme": "success",
        "intruder": "failed",
        "dotdot": "failed",
        "dtfake": "failed",
        "backupper": "failed",
    }
    # acme's bucket holds only acme's hour; the backup holds only acme's folder.
    assert all(k.startswith("exports/acme/dt=") for k in list_keys(s3, "client-acme"))
    _, table = read_hour(s3, "client-acme", folder("exports/acme", HOUR))
    assert set(table.column("client_id").to_pylist()) == {"acme"}
    assert list_keys(s3, "client-globex") == []
    assert {k.split("/")[0] for k in list_keys(s3, "test-backup")} == {"acme"}
    errors = dict(db.execute("SELECT client_id, error FROM export_runs WHERE status = 'failed'").fetchall())
    assert "lies inside client 'acme'" in errors["intruder"]
    assert "'..'" in errors["dotdot"]
    assert "dt=" in errors["dtfake"]
    assert "backup bucket" in errors["backupper"]
    # their rows were never claimed: nothing is lost, they export once the config is fixed
    assert db.execute("SELECT count(*) FROM events_log WHERE export_hour IS NOT NULL").fetchone()[0] == 3


def test_unreachable_bucket_fails_only_that_client(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", "acme")
    add_client(db, "globex", "no-such-bucket-here", "globex")
    insert_rows(db, make_rows("acme", spread(HOUR, 4), seed=1))
    insert_rows(db, make_rows("globex", spread(HOUR, 4), seed=2))
    dr = run_hour(run_dag, HOUR)
    assert _states_by_client(dr) == {"acme": "success", "globex": "failed"}, task_states(dr)
    assert read_hour(s3, "client-acme", folder("acme", HOUR))[0]["row_count"] == 4
    error = db.execute("SELECT error FROM export_runs WHERE client_id = 'globex'").fetchone()[0]
    assert "client 'globex'" in error and "no-such-bucket-here" in error and "does not exist" in error


def test_large_hour_is_split_into_parts(export_env, db, run_dag, monkeypatch):
    s3 = export_env
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_PART_MAX_ROWS", "1000")
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_ROW_GROUP_ROWS", "300")
    add_client(db, "acme", "client-acme", "acme")
    insert_rows(db, make_rows("acme", spread(HOUR, 2500), seed=1))
    assert run_hour(run_dag, HOUR).state == "success"
    manifest, table = read_hour(s3, "client-acme", folder("acme", HOUR))
    assert [f["key"] for f in manifest["files"]] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert [f["rows"] for f in manifest["files"]] == [1000, 1000, 500]
    assert table.num_rows == 2500 == len(set(table.column("event_id").to_pylist()))
    # rows come ordered by created_at across parts
    created = table.column("created_at").to_pylist()
    assert created == sorted(created)
    # a later re-run with bigger parts rewrites the hour and drops the now-stale parts
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_PART_MAX_ROWS", "2000")
    assert run_hour(run_dag, HOUR).state == "success"
    manifest, table = read_hour(s3, "client-acme", folder("acme", HOUR))
    assert [f["rows"] for f in manifest["files"]] == [2000, 500]
    assert list_keys(s3, "client-acme") == [
        f"{folder('acme', HOUR)}/{n}" for n in ("_manifest.json", "part-00000.parquet", "part-00001.parquet")
    ]
    assert table.num_rows == 2500


def _db_rows(db) -> list[dict]:
    cur = db.execute(
        'SELECT event_id::text, event_type, session_id, visitor_id, site_id, "timestamp", url, path, '
        "user_agent, ip_address, raw_event_data, created_at, batch_id, client_id "
        "FROM events_log WHERE client_id = 'acme' ORDER BY created_at, id"
    )
    names = [d.name for d in cur.description]
    out = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for row in out:  # psycopg gives ipaddress objects; the export holds inet's text form
        row["ip_address"] = None if row["ip_address"] is None else str(row["ip_address"])
    return out


def test_consumers_read_back_every_field(export_env, db, run_dag, tmp_path):
    import json

    import duckdb

    s3 = export_env
    add_client(db, "acme", "client-acme", "acme")
    rows = make_rows("acme", spread(HOUR, 30), seed=4)
    # awkward values: quotes, commas, newlines, unicode, empty vs NULL, IPv6, precise timestamps
    rows[0].update(url='https://acme.com/a,"b"\nc', user_agent="", session_id=None, path="/ü/日本")
    rows[1].update(ip_address="2001:db8::1", raw_event_data=json.dumps({"k": 'v"\\,\n', "n": [1, None]}))
    rows[2].update(timestamp=datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC), visitor_id="")
    insert_rows(db, rows)
    assert run_hour(run_dag, HOUR).state == "success"

    manifest, table = read_hour(s3, "client-acme", folder("acme", HOUR))
    schema = table.schema
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("ip_address").type == pa.string()
    assert schema.field("raw_event_data").type == pa.string()
    key = f"{folder('acme', HOUR)}/part-00000.parquet"
    body = s3.get_object(Bucket="client-acme", Key=key)["Body"].read()
    meta = pq.ParquetFile(io.BytesIO(body)).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"

    expected = _db_rows(db)
    got = table.to_pylist()
    assert len(got) == len(expected) == 30
    for exp, row in zip(expected, got, strict=True):
        for name, value in exp.items():
            if name == "raw_event_data":
                assert json.loads(row[name]) == value, name
            else:
                assert row[name] == value, (name, row[name], value)

    # DuckDB, as an analyst would, straight from the downloaded files
    path = tmp_path / "part-00000.parquet"
    path.write_bytes(body)
    con = duckdb.connect()
    duck = con.execute(
        "SELECT event_id, url, user_agent, session_id, visitor_id, ip_address, timestamp, created_at, "
        "json_extract_string(raw_event_data, '$.k') FROM read_parquet(?) ORDER BY created_at",
        [str(path)],
    ).fetchall()
    assert len(duck) == 30
    assert duck[0][1] == 'https://acme.com/a,"b"\nc' and duck[0][2] == "" and duck[0][3] is None
    assert duck[1][5] == "2001:db8::1" and duck[1][8] == 'v"\\,\n'
    for d, exp in zip(duck, expected, strict=True):
        assert d[0] == exp["event_id"]
        assert d[6] == exp["timestamp"] and d[7] == exp["created_at"]
    assert duck[2][6] == datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert manifest["interval_end"] == f"{HOUR + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}Z"
