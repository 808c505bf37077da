"""events_ingest end to end: real DAG run, real PostgreSQL, real S3 server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from devtools.demo_data import BAD_LINES, iter_events
from tests.conftest import LANDING_BUCKET, task_states
from tests.integration.ingest.conftest import count, events, keys, ndjson, put, read_ndjson, registry

START = datetime(2026, 11, 27, 10, tzinfo=UTC)


def test_mixed_good_and_bad_lines_load_and_reject(ingest_env: Any, db: Any, run_dag: Any) -> None:
    s3 = ingest_env
    good = list(iter_events(20, start=START, seed=1))
    lines: list[Any] = good[:10] + list(BAD_LINES) + good[10:]
    put(s3, "2026/11/27/a.ndjson.gz", ndjson(lines))
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)

    assert count(db) == 20
    rows = registry(db)
    assert len(rows) == 1
    reg = rows[0]
    assert reg["status"] == "processed"
    assert (reg["rows_loaded"], reg["rows_rejected"]) == (20, len(BAD_LINES))
    assert keys(s3, "incoming/") == []
    assert keys(s3, "processed/") == [f"processed/2026/11/27/a.f{reg['file_id']}.ndjson.gz"]
    assert reg["rejected_key"] == f"rejected/2026/11/27/a.f{reg['file_id']}.ndjson.gz.rejected.ndjson"
    rejected = read_ndjson(s3, reg["rejected_key"])
    assert [r["line"] for r in rejected] == list(range(11, 11 + len(BAD_LINES)))
    # lines of no known client keep their bytes except their IPs (contract §2.5): the line
    # without a site has its invalid ip_address removed
    assert [r["raw"] for r in rejected] == [
        line.replace('"999.1.1.1"', "null") if "999.1.1.1" in line else line for line in BAD_LINES
    ]
    assert not any("999.1.1.1" in r["reason"] for r in rejected)
    reasons = " | ".join(r["reason"] for r in rejected)
    assert "timestamp is missing" in reasons
    assert "event_type must be 1 to 50" in reasons
    assert "not an IPv4 or IPv6" in reasons
    assert "not valid JSON" in reasons

    loaded = events(db)
    assert len({r["created_at"] for r in loaded}) == 1
    assert {r["file_id"] for r in loaded} == {reg["file_id"]}
    by_client = {}
    for r in loaded:
        by_client[r["client_id"] or ""] = by_client.get(r["client_id"] or "", 0) + 1
    counts = dict(db.execute("SELECT client_id, rows_loaded FROM ingest_counts").fetchall())
    assert counts == by_client


def test_unreadable_files_are_quarantined_and_the_rest_loads(ingest_env: Any, db: Any, run_dag: Any) -> None:
    import gzip

    s3 = ingest_env
    good = ndjson(list(iter_events(5, start=START, seed=2)))
    whole = gzip.compress(good)
    put(s3, "q/good.ndjson", good)
    put(s3, "q/corrupt.ndjson.gz", b"\x1f\x8b\x08\x00" + b"not gzip at all" * 10, gz=False)
    put(s3, "q/truncated.ndjson.gz", whole[: len(whole) // 2], gz=False)
    put(s3, "q/notgzip.ndjson.gz", good, gz=False)
    put(s3, "q/latin1.ndjson", '{"event_type":"pageview","x":"café"}\n'.encode("latin-1"))
    put(s3, "q/gz-without-suffix.ndjson", whole, gz=False)
    put(s3, "q/data.csv", b"a,b\n1,2\n")
    put(s3, "q/broken.parquet", b"PAR1 this is not parquet")
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)

    assert count(db) == 5
    reg = {r["key"]: r for r in registry(db)}
    bad = [k for k in reg if not k.endswith("good.ndjson")]
    assert all(reg[k]["status"] == "quarantined" and reg[k]["moved_at"] for k in bad)
    assert reg["incoming/q/good.ndjson"]["status"] == "processed"
    assert keys(s3, "incoming/") == []
    for key in bad:
        name = key.removeprefix("incoming/")
        report = s3.get_object(Bucket="test-landing", Key=f"quarantine/{name}.error.json")["Body"].read()
        import orjson

        doc = orjson.loads(report)
        assert doc["key"] == key and doc["kind"] and doc["detail"]
        assert f"quarantine/{name}" in keys(s3, "quarantine/")
    kinds = {k: orjson.loads(reg[k]["error"])["kind"] for k in bad}
    assert kinds == {
        "incoming/q/corrupt.ndjson.gz": "corrupt_gzip",
        "incoming/q/truncated.ndjson.gz": "corrupt_gzip",
        "incoming/q/notgzip.ndjson.gz": "corrupt_gzip",
        "incoming/q/latin1.ndjson": "invalid_utf8",
        "incoming/q/gz-without-suffix.ndjson": "invalid_utf8",
        "incoming/q/data.csv": "unsupported_format",
        "incoming/q/broken.parquet": "corrupt_parquet",
    }
    assert orjson.loads(reg["incoming/q/latin1.ndjson"]["error"])["line"] == 1


def test_empty_files_load_zero_rows_and_move_to_processed(ingest_env: Any, db: Any, run_dag: Any) -> None:
    import gzip

    s3 = ingest_env
    put(s3, "e/empty.ndjson", b"")
    put(s3, "e/empty.ndjson.gz", gzip.compress(b""), gz=False)
    put(s3, "e/blank-lines.jsonl", b"\n\n  \n")
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    assert count(db) == 0
    assert {(r["status"], r["rows_loaded"], r["rows_rejected"]) for r in registry(db)} == {
        ("processed", 0, 0)
    }
    ids = {r["key"]: r["file_id"] for r in registry(db)}
    assert keys(s3, "processed/") == [
        f"processed/e/blank-lines.f{ids['incoming/e/blank-lines.jsonl']}.jsonl",
        f"processed/e/empty.f{ids['incoming/e/empty.ndjson']}.ndjson",
        f"processed/e/empty.f{ids['incoming/e/empty.ndjson.gz']}.ndjson.gz",
    ]
    assert sorted(r["processed_key"] for r in registry(db)) == keys(s3, "processed/")
    assert keys(s3, "rejected/") == []
    assert count(db, "ingest_counts") == 0


def test_rerun_loads_nothing_new_and_identical_reupload_is_not_loaded_twice(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    s3 = ingest_env
    body = ndjson(list(iter_events(7, start=START, seed=3)))
    put(s3, "r/a.ndjson", body)
    assert run_dag("events_ingest").state == "success"
    assert count(db) == 7

    dr = run_dag("events_ingest")
    assert dr.state == "success"
    assert task_states(dr)["summarize"] == "skipped"  # nothing committed: no Asset event
    assert count(db) == 7

    (row,) = registry(db)
    assert keys(s3, "processed/") == [row["processed_key"]]

    put(s3, "r/a.ndjson", body)  # the collector uploads the same file again
    assert run_dag("events_ingest").state == "success"
    assert count(db) == 7
    assert keys(s3, "incoming/") == []
    assert keys(s3, "processed/") == [row["processed_key"]]
    assert registry(db) == [row]

    # its processed/ copy expired: the re-upload is deleted, the copy not re-created
    s3.delete_object(Bucket=LANDING_BUCKET, Key=row["processed_key"])
    put(s3, "r/a.ndjson", body)
    assert run_dag("events_ingest").state == "success"
    assert count(db) == 7
    assert keys(s3, "incoming/") == []
    assert keys(s3, "processed/") == []
    assert registry(db) == [row]


def test_attribution_edge_cases(ingest_env: Any, db: Any, run_dag: Any) -> None:
    from tests.integration.ingest.conftest import add_client

    add_client(db, "blogco", ["blog.acme.com"])
    s3 = ingest_env
    cases = {
        "acme.com": "acme",
        "shop.acme.com": "acme",
        "a.b.shop.acme.com": "acme",
        "WWW.ACME.COM": "acme",
        "acme.com:8443": "acme",
        "acme.com.": "acme",
        "Shop.Acme.Com.:80": "acme",
        "x.blog.acme.com": "blogco",
        "blog.acme.com": "blogco",
        "notacme.com": None,
        "acme.com.evil.org": None,
        "unknown.example.org": None,
        "globex.de": "globex",
    }
    lines = []
    for i, site in enumerate(cases):
        lines.append(
            {"event_type": "pageview", "timestamp": f"2026-11-27T10:00:{i:02d}Z", "site_id": site, "n": i}
        )
    lines.append(
        {
            "event_type": "pageview",
            "timestamp": "2026-11-27T10:01:00Z",
            "url": "https://APP.Initech.io:8080/x?y=1",
            "n": 100,
        }
    )
    lines.append({"event_type": "pageview", "timestamp": "2026-11-27T10:01:01Z", "n": 101})
    put(s3, "attr/a.ndjson", ndjson(lines))
    assert run_dag("events_ingest").state == "success"
    got = {r["raw_event_data"]["n"]: r for r in events(db)}
    for i, (site, client) in enumerate(cases.items()):
        assert got[i]["client_id"] == client, site
    assert got[3]["site_id"] == "www.acme.com"
    assert got[6]["site_id"] == "shop.acme.com"
    assert got[100]["site_id"] == "app.initech.io" and got[100]["client_id"] == "initech"
    assert got[100]["path"] == "/x"
    assert got[101]["site_id"] is None and got[101]["client_id"] is None
    counts = dict(db.execute("SELECT client_id, rows_loaded FROM ingest_counts").fetchall())
    assert counts[""] == 4


def test_gdpr_clients_never_store_the_raw_ip(ingest_env: Any, db: Any, run_dag: Any) -> None:
    s3 = ingest_env
    lines = [
        {
            "event_type": "pageview",
            "timestamp": "2026-11-27T10:00:00Z",
            "site_id": "shop.globex-shop.eu",
            "ip_address": "203.0.113.77",
            "n": 1,
        },
        {
            "event_type": "pageview",
            "timestamp": "2026-11-27T10:00:01Z",
            "site_id": "globex.de",
            "ip_address": "2001:db8:1:2::5",
            "n": 2,
        },
        {"event_type": "pageview", "timestamp": "2026-11-27T10:00:02Z", "site_id": "globex.de", "n": 3},
        {
            "event_type": "pageview",
            "timestamp": "2026-11-27T10:00:03Z",
            "site_id": "acme.com",
            "ip_address": "198.51.100.9",
            "n": 4,
        },
    ]
    put(s3, "gdpr/a.ndjson", ndjson(lines))
    assert run_dag("events_ingest").state == "success"
    got = {r["raw_event_data"]["n"]: r for r in events(db)}
    assert got[1]["ip"] == "203.0.113.0" and got[1]["privacy_level"] == "gdpr"
    assert got[1]["raw_event_data"]["ip_address"] == "203.0.113.0"
    assert len(got[1]["raw_event_data"]["ip_pseudonym"]) == 32
    assert got[2]["ip"] == "2001:db8:1::"
    assert got[3]["ip"] is None and "ip_pseudonym" not in got[3]["raw_event_data"]
    assert got[4]["ip"] == "198.51.100.9" and got[4]["privacy_level"] == "standard"
    leaked = db.execute(
        "SELECT count(*) FROM events_log WHERE raw_event_data::text LIKE '%%203.0.113.77%%' "
        "OR raw_event_data::text LIKE '%%2001:db8:1:2::5%%' "
        "OR host(ip_address) IN ('203.0.113.77', '2001:db8:1:2::5')"
    ).fetchone()[0]
    assert leaked == 0


def test_parquet_landing_file(ingest_env: Any, db: Any, run_dag: Any) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    s3 = ingest_env
    table = pa.table(
        {
            "event_type": ["pageview", "click", ""],
            "timestamp": pa.array(
                [datetime(2026, 11, 27, 10, tzinfo=UTC)] * 3, type=pa.timestamp("ms", tz="UTC")
            ),
            "site_id": ["www.acme.com", "globex.de", "acme.com"],
            "ip_address": ["198.51.100.9", "203.0.113.77", None],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    put(s3, "pq/a.parquet", buf.getvalue())
    assert run_dag("events_ingest").state == "success"
    got = events(db)
    assert sorted((r["event_type"], r["client_id"], r["ip"]) for r in got) == [
        ("click", "globex", "203.0.113.0"),
        ("pageview", "acme", "198.51.100.9"),
    ]
    (reg,) = registry(db)
    rejected = read_ndjson(s3, f"rejected/pq/a.f{reg['file_id']}.parquet.rejected.ndjson")
    assert [r["line"] for r in rejected] == [3]
