"""Benchmark: one erasure request against a year of hourly backups, original design vs ours.

Builds, on a throw-away embedded PostgreSQL and a local S3 server:

- one client with ``--hours`` (8,760: a year) hourly folders in the backup bucket, each
  one small Parquet part of ``--rows-per-hour`` rows and its ``_manifest.json``, as the
  export writes them;
- a visitor present in ``--visitor-hours`` of those hours (the newest ones: its rows
  are still in ``events_log``, exported in those hours), plus ``--db-rows`` rows of
  other visitors in ``events_log``;
- an old visitor present in ``--old-visitor-hours`` hours weeks or months back, whose
  rows retention has deleted: only the backup holds it;
- the backup visitor index (``backup_visitor_hours``) as the export writes it: one row
  per (visitor digest, hour) of every folder (its size is measured).

Then carries out, on the same data (the visitors' folders are put back in between):

1. ``seed``: the original design's backup pass - every folder of the client is listed
   and every part read, its ``visitor_id`` column checked, a part holding the visitor
   rewritten (``BackupPurge.run()`` without folders: the same code path the original
   ``purge_backup`` took);
2. ``ours``: a request carried out by :func:`events_pipeline.erasure.requests.run_erasure`
   end to end (rows deleted, hours recorded, only those folders purged, the landing
   bucket step, audit trail);
3. ``index``: a request for the old visitor (rows gone with retention), no
   ``whole_backup``: its hours come from the visitor index only;
4. ``whole_backup``: the same request with ``whole_backup`` and the index emptied (hours
   exported before the index existed): the opt-in pass over every folder of the client.

S3 requests are counted per operation by a botocore event hook on the client (the real
requests to the S3 server, nothing replaced). Prints a table, writes
``benchmarks/results/erasure.json``.

Usage: ``PYTHONPATH=plugins:. .venv/bin/python benchmarks/bench_erasure.py [--hours 8760]
[--visitor-hours 3] [--old-visitor-hours 3]``
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from devtools import devstack  # noqa: E402
from events_pipeline.common.intervals import HourInterval  # noqa: E402
from events_pipeline.common.migrations import apply_migrations  # noqa: E402
from events_pipeline.common.partitions import ensure_daily_partitions  # noqa: E402
from events_pipeline.erasure.backup import BackupPurge  # noqa: E402
from events_pipeline.erasure.matching import Wanted  # noqa: E402
from events_pipeline.erasure.requests import LandingLayout, run_erasure  # noqa: E402
from events_pipeline.export.keys import backup_location  # noqa: E402
from events_pipeline.export.manifest import ExportedFile, build_manifest, dump_manifest  # noqa: E402
from events_pipeline.export.parquet_parts import arrow_schema  # noqa: E402
from events_pipeline.privacy.visitor_digest import visitor_digest  # noqa: E402

CLIENT = "acme"
VISITOR = "v-benchmark-erase-me"
OLD_VISITOR = "v-benchmark-erase-me-old"  # its rows were deleted by retention
BACKUP, LANDING = "bench-backup", "bench-landing"


class RequestCounter:
    """Counts the S3 requests a boto3 client makes, per operation (botocore's before-call event)."""

    def __init__(self, client) -> None:
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-call.s3.*", self._count)

    def _count(self, model, **_kwargs) -> None:
        self.calls[model.name] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts so far."""
        return dict(self.calls)


def _visitors(hour: datetime, rows: int, visitor: str | None) -> list[str]:
    """The visitor ids of one hour's part (``visitor`` twice when given)."""
    visitors = [f"v{(hour.hour * 131 + i) % 9973}" for i in range(rows)]
    if visitor is not None:
        visitors[1] = visitors[rows // 2] = visitor
    return visitors


def _part(hour: datetime, rows: int, visitor: str | None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    ts = [hour + timedelta(seconds=i) for i in range(rows)]
    visitors = _visitors(hour, rows, visitor)
    data = {
        "event_id": [hashlib.md5(f"{hour}{i}".encode()).hexdigest() for i in range(rows)],  # noqa: S324
        "event_type": ["pageview"] * rows,
        "session_id": [f"s{i}" for i in range(rows)],
        "visitor_id": visitors,
        "site_id": ["www.acme.com"] * rows,
        "timestamp": ts,
        "url": ["https://www.acme.com/products?id=1"] * rows,
        "path": ["/products"] * rows,
        "user_agent": ["Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"] * rows,
        "ip_address": ["203.0.113.0"] * rows,
        "raw_event_data": [json.dumps({"event_type": "pageview", "visitor_id": v}) for v in visitors],
        "created_at": ts,
        "batch_id": ["b1"] * rows,
        "client_id": [CLIENT] * rows,
    }
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pydict(data, schema=schema), buf, compression="zstd")
    return buf.getvalue()


def upload_year(s3, hours: list[datetime], holders: dict[datetime, str], rows: int) -> dict[str, bytes]:
    """Put one part and its manifest per hour; return the visitors' hours' objects (to restore later).

    :param holders: hour -> the requested visitor it holds.
    """

    def one(hour: datetime) -> tuple[datetime, dict[str, bytes]]:
        loc = backup_location(CLIENT, BACKUP, HourInterval(hour))
        body = _part(hour, rows, holders.get(hour))
        info = ExportedFile("part-00000.parquet", rows, len(body), hashlib.sha256(body).hexdigest())
        manifest = dump_manifest(build_manifest(CLIENT, HourInterval(hour), [info]))
        objects = {loc.key("part-00000.parquet"): body, loc.manifest_key: manifest}
        for key, data in objects.items():
            s3.put_object(Bucket=BACKUP, Key=key, Body=data)
        return hour, objects

    kept: dict[str, bytes] = {}
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for n, (hour, objects) in enumerate(pool.map(one, hours), 1):
            if hour in holders:
                kept.update(objects)
            if n % 1000 == 0:
                print(f"  uploaded {n:,} hours ({time.monotonic() - t0:.0f}s)", flush=True)
    return kept


def seed_events(conn, visitor_hours: list[datetime], db_rows: int, per_hour: int) -> None:
    """The visitor's exported rows in its hours, and other visitors' rows around them."""
    now = datetime.now(UTC)
    ensure_daily_partitions(conn, (now - timedelta(days=8)).date(), (now + timedelta(days=1)).date())
    conn.autocommit = True
    cols = "event_type, visitor_id, site_id, timestamp, raw_event_data, created_at, processed_at, client_id, "
    cols += "export_status, export_hour"
    with conn.cursor() as cur, cur.copy(f"COPY events_log ({cols}) FROM STDIN") as cp:
        for hour in visitor_hours:
            for _ in range(2):
                cp.write_row(
                    ["pageview", VISITOR, "www.acme.com", hour, "{}", hour, hour + timedelta(hours=1), CLIENT,
                     "exported", hour]
                )  # fmt: skip
        for i in range(db_rows):
            t = now - timedelta(seconds=(i * 7) % (6 * 86400))
            h = t.replace(minute=0, second=0, microsecond=0)
            cp.write_row(
                ["pageview", f"v{i % 50000}", "www.acme.com", t, "{}", t, t + timedelta(hours=1), CLIENT,
                 "exported", h]
            )  # fmt: skip
    conn.execute("ANALYZE events_log")


def seed_index(conn, hours: list[datetime], holders: dict[datetime, str], rows: int) -> dict[str, float]:
    """The backup visitor index as the export writes it: one row per (visitor digest, hour) of every folder.

    :return: its rows, bytes (table and primary key) and bytes per row.
    """
    with (
        conn.cursor() as cur,
        cur.copy("COPY backup_visitor_hours (client_id, visitor_digest, export_hour) FROM STDIN") as cp,
    ):
        for hour in hours:
            for visitor in sorted(set(_visitors(hour, rows, holders.get(hour)))):
                cp.write_row([CLIENT, visitor_digest(CLIENT, visitor), hour])
    conn.execute("VACUUM ANALYZE backup_visitor_hours")
    n, size = conn.execute(
        "SELECT count(*), pg_total_relation_size('backup_visitor_hours') FROM backup_visitor_hours"
    ).fetchone()
    return {"rows": n, "bytes": size, "bytes_per_row": round(size / n, 1) if n else 0.0}


def _request(conn, s3, visitor: str, *, whole_backup: bool = False) -> dict:
    """File one request for ``visitor`` and carry it out with ``run_erasure``; return its measures."""
    conn.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id, whole_backup) VALUES (%s, %s, %s)",
        (CLIENT, visitor, whole_backup),
    )
    counter = RequestCounter(s3)
    t0 = time.monotonic()
    summary = run_erasure(conn, s3, BACKUP, LandingLayout(bucket=LANDING))
    seconds = time.monotonic() - t0
    client = summary["clients"][CLIENT]
    return {
        "seconds": round(seconds, 3),
        "s3_requests": counter.snapshot(),
        "objects_read": client.get("objects_read", 0),
        "bytes_read": client.get("bytes_read", 0),
        "objects_rewritten": client.get("objects_rewritten", 0),
        "rows_removed_from_backups": client.get("rows_removed", 0),
        "rows_deleted": client["rows_deleted"],
        "hours": client.get("hours", 0),
        "status": client["status"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=int, default=8760, help="hourly backup folders of the client (a year)")
    ap.add_argument("--rows-per-hour", type=int, default=20)
    ap.add_argument("--visitor-hours", type=int, default=3, help="hours that hold the visitor")
    ap.add_argument("--db-rows", type=int, default=200_000, help="other visitors' rows in events_log")
    ap.add_argument(
        "--old-visitor-hours",
        type=int,
        default=3,
        help="old hours (rows deleted by retention) that hold the old visitor",
    )
    args = ap.parse_args()
    import boto3
    import psycopg

    work = Path(tempfile.mkdtemp(prefix="bench-erasure-"))
    pg = devstack.start_postgres(work / "pg" / "data")
    pg.create_database("bench")
    s3_server = devstack.start_s3()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", devstack.LOCAL_AWS_KEY)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", devstack.LOCAL_AWS_SECRET)
    devstack.create_buckets(s3_server.endpoint_url, [BACKUP, LANDING])
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name=devstack.LOCAL_REGION)
    newest = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    hours = [newest - timedelta(hours=i) for i in range(args.hours)]
    step = max(1, 48 // max(1, args.visitor_hours))
    visitor_hours = [newest - timedelta(hours=i * step) for i in range(args.visitor_hours)]
    spacing = args.hours // (args.old_visitor_hours + 1)
    old_hours = [newest - timedelta(hours=(i + 1) * spacing) for i in range(args.old_visitor_hours)]
    holders = {**dict.fromkeys(old_hours, OLD_VISITOR), **dict.fromkeys(visitor_hours, VISITOR)}
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": "PYTHONPATH=plugins:. .venv/bin/python benchmarks/bench_erasure.py "
        + " ".join(sys.argv[1:]),
        "hours": args.hours,
        "rows_per_hour": args.rows_per_hour,
        "visitor_hours": args.visitor_hours,
        "db_rows": args.db_rows,
        "old_visitor_hours": args.old_visitor_hours,
    }
    try:
        print(f"uploading {args.hours:,} hourly folders (part + manifest) ...", flush=True)
        t0 = time.monotonic()
        originals = upload_year(s3, hours, holders, args.rows_per_hour)
        results["upload_s"] = round(time.monotonic() - t0, 1)
        with psycopg.connect(pg.dsn("bench"), autocommit=True) as conn:
            apply_migrations(conn)
            conn.execute(
                "INSERT INTO clients (client_id, name, export_bucket, export_prefix) "
                "VALUES (%s, 'Acme', 'acme-exports', 'events/acme')",
                (CLIENT,),
            )
            conn.execute("INSERT INTO client_domains (domain, client_id) VALUES ('acme.com', %s)", (CLIENT,))
            seed_events(conn, visitor_hours, args.db_rows, args.rows_per_hour)
            results["index_size"] = seed_index(conn, hours, holders, args.rows_per_hour)
            print(f"visitor index: {results['index_size']}", flush=True)

            # ours: a request carried out end to end
            results["ours"] = _request(conn, s3, VISITOR)
            print(f"ours: {results['ours']}", flush=True)
            # index: the old visitor, whose rows retention deleted, found through the visitor index
            results["index"] = _request(conn, s3, OLD_VISITOR)
            print(f"index: {results['index']}", flush=True)
            # whole_backup: the same request when its hours predate the index (opt-in pass)
            for key, data in originals.items():
                s3.put_object(Bucket=BACKUP, Key=key, Body=data)
            conn.execute("TRUNCATE backup_visitor_hours")
            results["whole_backup"] = _request(conn, s3, OLD_VISITOR, whole_backup=True)
            print(f"whole_backup: {results['whole_backup']}", flush=True)

            # seed: the original design's pass over every folder, on the same data
            for key, data in originals.items():
                s3.put_object(Bucket=BACKUP, Key=key, Body=data)
            seed_s3 = boto3.client(
                "s3", endpoint_url=s3_server.endpoint_url, region_name=devstack.LOCAL_REGION
            )
            counter = RequestCounter(seed_s3)
            seed_request = conn.execute(
                "INSERT INTO gdpr_erasure_requests (client_id, visitor_id) VALUES (%s, %s) "
                "RETURNING request_id",
                (CLIENT, VISITOR),
            ).fetchone()[0]
            purge = BackupPurge(conn, seed_s3, BACKUP, CLIENT, [Wanted(seed_request, CLIENT, VISITOR)])
            t0 = time.monotonic()
            stats = purge.run(None)
            seed_s = time.monotonic() - t0
            results["seed"] = {
                "seconds": round(seed_s, 3),
                "s3_requests": counter.snapshot(),
                "objects_read": stats.get("objects_read", 0),
                "bytes_read": stats.get("bytes_read", 0),
                "objects_rewritten": stats.get("objects_rewritten", 0),
                "rows_removed_from_backups": stats.get("rows_removed", 0),
            }
            print(f"seed: {seed_s:.2f}s, {stats}", flush=True)
    finally:
        s3_server.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    _report(results)
    out = REPO / "benchmarks" / "results" / "erasure.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwritten to {out.relative_to(REPO)}")
    return 0


def _report(r: dict) -> None:
    print(
        f"\none erasure request; client with {r['hours']:,} hourly backup folders "
        f"({r['rows_per_hour']} rows each), visitor in {r['visitor_hours']} of them; "
        f"{r['db_rows']:,} other rows in events_log; old visitor (rows deleted by retention) in "
        f"{r['old_visitor_hours']} older hours"
    )
    size = r["index_size"]
    print(
        f"visitor index: {size['rows']:,} rows (digest, hour), {size['bytes'] / 2**20:.1f} MiB, "
        f"{size['bytes_per_row']:.0f} bytes per row"
    )
    header = (
        f"{'design':12} {'seconds':>9} {'objects read':>13} {'MB read':>9} {'LIST':>6} {'GET':>7} "
        f"{'PUT':>5} {'rewritten':>10} {'rows removed':>13}"
    )
    print(header)
    print("-" * len(header))
    for name in ("seed", "ours", "index", "whole_backup"):
        m = r[name]
        calls = m["s3_requests"]
        print(
            f"{name:12} {m['seconds']:>9.2f} {m['objects_read']:>13,} {m['bytes_read'] / 1e6:>9.1f} "
            f"{calls.get('ListObjectsV2', 0):>6,} {calls.get('GetObject', 0):>7,} "
            f"{calls.get('PutObject', 0):>5,} "
            f"{m['objects_rewritten']:>10,} {m['rows_removed_from_backups']:>13,}"
        )
    s, o = r["seed"], r["ours"]
    r["speedup"] = round(s["seconds"] / o["seconds"], 1) if o["seconds"] else None
    r["objects_read_ratio"] = round(s["objects_read"] / o["objects_read"], 1) if o["objects_read"] else None
    print(
        f"ratio seed/ours: time {r['speedup']}x, objects read {r['objects_read_ratio']}x "
        f"(ours includes deleting the rows, the landing bucket step and the audit trail)"
    )
    w, i = r["whole_backup"], r["index"]
    r["index_speedup"] = round(w["seconds"] / i["seconds"], 1) if i["seconds"] else None
    r["index_objects_read_ratio"] = (
        round(w["objects_read"] / i["objects_read"], 1) if i["objects_read"] else None
    )
    print(
        f"rows deleted by retention: whole_backup/index: time {r['index_speedup']}x, "
        f"objects read {r['index_objects_read_ratio']}x"
    )


if __name__ == "__main__":
    sys.exit(main())
