"""Benchmark: the pipeline's export path vs Airflow's SqlToS3Operator, on the same rows.

Usage::

    .venv/bin/python benchmarks/bench_export.py [--rows 1000000] [--repeat 2]

Starts its own PostgreSQL (pgserver) and S3 server (moto), loads ``--rows``
events for ONE client in ONE hour (20k realistic events generated in Python,
COPYed in, then replicated in SQL with fresh event ids and created_at spread
over the hour), then runs in separate subprocesses, side by side:

- ``pipeline (first run)``: ``exporting.export_client_hour`` for that hour -
  claim, COPY TO -> Arrow -> Parquet zstd parts, upload to the client bucket
  AND the backup bucket, manifests, mark the rows exported, record the run;
- ``pipeline (re-run)``: the same call again (hour already published: no claim
  or marking, files rewritten), i.e. the export path alone;
- ``SqlToS3Operator``: Airflow's own operator (amazon provider), the way its
  docs show: ``pandas.read_sql`` of the same SELECT, ``DataFrame.to_parquet``
  (zstd, for a like-for-like file), upload to one bucket.

For reference, ``COPY TO STDOUT only`` runs the pipeline's COPY and discards the bytes:
the database's share, a ceiling for any exporter reading through PostgreSQL.

Each path runs in a fresh subprocess; peak memory is that process's ``VmHWM``.
Prints a table and writes ``benchmarks/results/export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

HOUR = datetime(2026, 11, 26, 12, tzinfo=UTC)
CLIENT = "benchco"
CLIENT_BUCKET = "bench-client"
BACKUP_BUCKET = "bench-backup"
BASELINE_BUCKET = "bench-baseline"
SEED_EVENTS = 20_000

BASELINE_SQL = """
SELECT event_id::text AS event_id, event_type, session_id, visitor_id, site_id, "timestamp", url, path,
       user_agent, host(ip_address) AS ip_address, raw_event_data::text AS raw_event_data, created_at,
       batch_id, client_id
FROM events_log
WHERE client_id = %(client_id)s AND export_hour = %(hour_start)s
ORDER BY created_at, id
"""


def _env(dsn_uri: str, endpoint: str, home: Path) -> dict[str, str]:
    from events_pipeline import devstack

    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_EVENTS_DB": dsn_uri,
            "AIRFLOW_CONN_AWS_DEFAULT": devstack.aws_connection_json(endpoint),
            "AIRFLOW_VAR_EVENTS_BACKUP_BUCKET": BACKUP_BUCKET,
            "AWS_ACCESS_KEY_ID": devstack.LOCAL_AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": devstack.LOCAL_AWS_SECRET,
            "AWS_DEFAULT_REGION": devstack.LOCAL_REGION,
            "PYTHONPATH": str(REPO / "plugins"),
        }
    )
    return env


def child_pipeline() -> dict:
    """Run the pipeline's export of the benchmark hour (in a subprocess)."""
    # heavy imports before the clock starts (a worker has them loaded already)
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401

    from events_pipeline.exporting import export_client_hour

    start = time.perf_counter()
    summary = export_client_hour(CLIENT, HOUR, HOUR + timedelta(hours=1), run_id="bench")
    return {
        "seconds": time.perf_counter() - start,
        "rows": summary["rows"],
        "bytes": summary["bytes"],
        "upload_seconds": summary["upload_seconds"],
    }


def child_baseline() -> dict:
    """Run Airflow's SqlToS3Operator on the same rows (in a subprocess)."""
    import pandas
    import pyarrow.parquet  # noqa: F401
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401
    from airflow.providers.amazon.aws.transfers.sql_to_s3 import SqlToS3Operator
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401

    del pandas

    op = SqlToS3Operator(
        task_id="sql_to_s3",
        sql_conn_id="events_db",
        query=BASELINE_SQL,
        parameters={"client_id": CLIENT, "hour_start": HOUR},
        s3_bucket=BASELINE_BUCKET,
        s3_key=f"{CLIENT}/dt={HOUR:%Y-%m-%d}/hour={HOUR:%H}/data.parquet",
        file_format="parquet",
        df_kwargs={"compression": "zstd"},
        replace=True,
    )
    start = time.perf_counter()
    op.execute(context={})
    seconds = time.perf_counter() - start
    import boto3

    from events_pipeline import devstack

    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["BENCH_S3_ENDPOINT"],
        aws_access_key_id=devstack.LOCAL_AWS_KEY,
        aws_secret_access_key=devstack.LOCAL_AWS_SECRET,
        region_name=devstack.LOCAL_REGION,
    )
    head = s3.head_object(Bucket=BASELINE_BUCKET, Key=op.s3_key)
    import io

    import pyarrow.parquet as pq

    body = s3.get_object(Bucket=BASELINE_BUCKET, Key=op.s3_key)["Body"].read()
    rows = pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    return {"seconds": seconds, "rows": rows, "bytes": head["ContentLength"]}


def child_copy_floor() -> dict:
    """Only PostgreSQL's side of the pipeline: the same COPY ... TO STDOUT, bytes discarded."""
    import psycopg

    from events_pipeline.db import load_sql
    from events_pipeline.exporting import _params
    from events_pipeline.intervals import HourInterval

    sql = "COPY (" + load_sql("export/select_claimed.sql").strip().rstrip(";") + ") TO STDOUT (FORMAT csv)"
    rows = 0
    start = time.perf_counter()
    with psycopg.connect(os.environ["BENCH_DSN"], autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL work_mem = '64MB'")
        conn.execute("SET LOCAL jit = off")
        with conn.cursor().copy(sql, _params(CLIENT, HourInterval(HOUR))) as copy:
            for _chunk in copy:
                rows += 1
    return {"seconds": time.perf_counter() - start, "rows": rows, "bytes": 0}


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    ``VmHWM`` from ``/proc/self/status`` belongs to the process's own address space:
    ``ru_maxrss`` survives ``execve`` and would report the parent's peak at fork time
    (here the parent runs the S3 server, which holds every uploaded object in memory).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(kind: str, env: dict[str, str]) -> dict:
    """Run one path in a fresh interpreter and return its measurements (+ peak RSS)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_rows(dsn: str, rows: int) -> None:
    """Insert ``rows`` events of CLIENT created inside HOUR (COPY of seeds, then SQL replication)."""
    import random

    import psycopg

    from events_pipeline.demo_data import make_event

    rng = random.Random(42)
    cols = (
        "event_id, event_type, session_id, visitor_id, site_id, timestamp, url, path, user_agent, "
        "ip_address, raw_event_data"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO clients (client_id, name, export_bucket, export_prefix) VALUES (%s, %s, %s, %s)",
            (CLIENT, "Bench Co", CLIENT_BUCKET, "exports"),
        )
        conn.execute(
            "CREATE UNLOGGED TABLE bench_seed (rn int, event_id uuid, event_type text, session_id text, "
            "visitor_id text, site_id text, timestamp timestamptz, url text, path text, user_agent text, "
            "ip_address inet, raw_event_data json)"
        )
        with conn.cursor().copy(f"COPY bench_seed (rn, {cols}) FROM STDIN") as copy:
            for i in range(SEED_EVENTS):
                ev = make_event(rng, HOUR + timedelta(seconds=i % 3600))
                copy.write_row(
                    (
                        i,
                        ev["event_id"],
                        ev["event_type"],
                        ev["session_id"],
                        ev["visitor_id"],
                        ev["site_id"],
                        ev["timestamp"],
                        ev["url"],
                        "/" + ev["url"].split("?")[0].split("/", 3)[-1],
                        ev["user_agent"],
                        ev["ip_address"],
                        json.dumps(ev),
                    )
                )
        reps = -(-rows // SEED_EVENTS)
        conn.execute(
            f"""
            INSERT INTO events_log ({cols}, created_at, client_id, batch_id)
            SELECT CASE WHEN g = 0 THEN s.event_id ELSE gen_random_uuid() END,
                   event_type, session_id, visitor_id, site_id, timestamp, url, path, user_agent,
                   ip_address, raw_event_data,
                   %(hour)s + make_interval(secs => (g * {SEED_EVENTS} + s.rn) * 3600.0 / %(rows)s),
                   %(client)s, 'bench-batch-' || g
            FROM generate_series(0, {reps - 1}) g CROSS JOIN bench_seed s
            WHERE g * {SEED_EVENTS} + s.rn < %(rows)s
            """,
            {"hour": HOUR, "rows": rows, "client": CLIENT},
        )
        conn.execute("DROP TABLE bench_seed")
        conn.execute("VACUUM ANALYZE events_log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="re-runs of each path after the first run")
    parser.add_argument("--child", choices=["pipeline", "baseline", "copy"])
    args = parser.parse_args()

    if args.child:
        kinds = {"pipeline": child_pipeline, "baseline": child_baseline, "copy": child_copy_floor}
        result = kinds[args.child]()
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    import psycopg

    from events_pipeline import devstack
    from events_pipeline.migrations import apply_migrations
    from events_pipeline.partitions import ensure_daily_partitions

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    pg = devstack.start_postgres(work / "pg" / "data")
    s3 = devstack.start_s3()
    try:
        pg.create_database("events")
        dsn = pg.dsn("events")
        with psycopg.connect(dsn) as conn:
            apply_migrations(conn)
            ensure_daily_partitions(conn, HOUR.date(), HOUR.date())
        devstack.create_buckets(s3.endpoint_url, [CLIENT_BUCKET, BACKUP_BUCKET, BASELINE_BUCKET])
        t0 = time.perf_counter()
        load_rows(dsn, args.rows)
        print(f"loaded {args.rows:,} rows in {time.perf_counter() - t0:.1f} s", flush=True)
        env = _env(pg.airflow_uri("events"), s3.endpoint_url, work / "airflow")
        env["BENCH_S3_ENDPOINT"] = s3.endpoint_url
        env["BENCH_DSN"] = dsn

        results: list[dict] = []

        def record(name: str, kind: str) -> None:
            r = run_child(kind, env)
            r["path"] = name
            r["rows_per_s"] = r["rows"] / r["seconds"]
            results.append(r)
            print(
                f"  {name:<26} {r['rows']:>10,} rows {r['seconds']:>8.2f} s {r['rows_per_s']:>10,.0f} rows/s "
                f"peak {r['peak_rss_mb']:>7.0f} MB",
                flush=True,
            )

        record("pipeline (first run)", "pipeline")  # claims, exports, marks
        for _ in range(args.repeat):
            record("SqlToS3Operator", "baseline")
            record("pipeline (re-run)", "pipeline")
            record("COPY TO STDOUT only", "copy")

        def best(name: str) -> dict:
            return max((r for r in results if r["path"] == name), key=lambda r: r["rows_per_s"])

        base, rerun, first = best("SqlToS3Operator"), best("pipeline (re-run)"), best("pipeline (first run)")
        floor = best("COPY TO STDOUT only")
        summary = {
            "rows": args.rows,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count()},
            "runs": results,
            "ratio_rerun_vs_sqltos3": rerun["rows_per_s"] / base["rows_per_s"],
            "ratio_first_run_vs_sqltos3": first["rows_per_s"] / base["rows_per_s"],
            "ratio_copy_floor_vs_sqltos3": floor["rows_per_s"] / base["rows_per_s"],
            "peak_rss_mb": {
                "pipeline": max(r["peak_rss_mb"] for r in results if r["path"].startswith("pipeline")),
                "SqlToS3Operator": base["peak_rss_mb"],
            },
            "notes": (
                "pipeline writes each part to TWO buckets (client + backup) plus manifests and, on the "
                "first run, marks every row exported; SqlToS3Operator writes one object to one bucket"
            ),
        }
        print()
        print(f"{'path':<26} {'rows/s':>12} {'seconds':>9} {'peak MB':>9} {'ratio':>7}")
        for r in (base, first, rerun, floor):
            print(
                f"{r['path']:<26} {r['rows_per_s']:>12,.0f} {r['seconds']:>9.2f} {r['peak_rss_mb']:>9.0f} "
                f"{r['rows_per_s'] / base['rows_per_s']:>6.2f}x"
            )
        out = REPO / "benchmarks" / "results" / "export.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {out.relative_to(REPO)}")
    finally:
        s3.stop()
        pg.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
