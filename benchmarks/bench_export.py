"""Benchmark: the pipeline's export path vs Airflow's SqlToS3Operator, on the same rows.

Usage::

    .venv/bin/python benchmarks/bench_export.py [--rows 1000000] [--repeat 2] [--mark-variants]
        [--server-variants] [--versus-stock] [--pg-setting NAME=VALUE ...] [--stock-server]

Starts its own PostgreSQL (pgserver) and S3 server (moto), loads ``--rows``
events for ONE client in ONE hour (20k realistic events generated in Python,
COPYed in, then replicated in SQL with fresh event ids and created_at spread
over the hour), then runs in separate subprocesses, side by side:

- ``pipeline (first run)``: ``export.client_hour.export_client_hour`` for that hour on
  unexported rows - binary COPY (ADBC) -> Arrow -> Parquet zstd parts, upload to the client
  bucket AND the backup bucket, the one marking UPDATE (export_hour,
  export_status, processed_at) in the export's snapshot, manifests, the run record;
- ``pipeline (re-run)``: the same call again (hour already published: nothing to
  mark, files rewritten), i.e. the data path alone (select -> Parquet -> both
  buckets + manifests);
- ``SqlToS3Operator``: Airflow's own operator (amazon provider), the way its
  docs show: ``pandas.read_sql`` of the same SELECT, ``DataFrame.to_parquet``
  (zstd, for a like-for-like file), upload to one bucket;
- ``SqlToS3Operator + mark``: the operator on unexported rows, then the same
  marking UPDATE the pipeline runs (what any path that follows contract §5 must do).

Before each path that marks rows, the rows are reset to unexported and the
table is compacted (``VACUUM FULL``), as freshly ingested rows are (untimed).
For reference, ``COPY TO STDOUT only`` runs the pipeline's SELECT as a text COPY and
discards the bytes: the database's share, a ceiling for any exporter reading through
PostgreSQL.

Ratios printed: (a) data path = re-run / SqlToS3Operator; (b) first run /
SqlToS3Operator; (c) first run / (SqlToS3Operator + mark). For every path the WAL it
wrote and how much the hour's partition grew are measured around it (per million rows):
the marking's cost beyond its time.

``--mark-variants`` instead measures the marking UPDATE alone (no export) on the same
rows under table variants: today's indexes; a fillfactor leaving room for same-page
updates; without ``events_log_export_hour_idx``; without both export indexes (the only
way the marking can be a HOT update) - time, WAL and growth per million rows, HOT share.
``--server-variants`` does the same under server settings (checkpoints, ``wal_compression``,
buffers; ``full_page_writes = off`` as an unsafe reference). ``--versus-stock`` alternates the
first run and operator + mark under PostgreSQL's defaults and under the run's settings
(``--pg-setting NAME=VALUE``, applied with ALTER SYSTEM). Every path also reports the CPU
seconds of the server, of its own process and of the S3 server.

Each path runs in a fresh subprocess; peak memory is that process's ``VmHWM``.
Prints a table and writes ``benchmarks/results/export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

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
#: The operator's query for path (c): the rows not exported yet (what the mark then updates).
BASELINE_UNEXPORTED_SQL = BASELINE_SQL.replace(
    "export_hour = %(hour_start)s",
    "export_hour IS NULL AND export_status = 'pending' AND created_at < %(hour_end)s",
)


def _env(dsn_uri: str, endpoint: str, home: Path) -> dict[str, str]:
    from devtools import devstack

    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_EVENTS_DB": dsn_uri,
            "AIRFLOW_CONN_AWS_DEFAULT": devstack.aws_connection_json(endpoint),
            "AIRFLOW_VAR_EVENTS_BACKUP_BUCKET": BACKUP_BUCKET,
            "AIRFLOW_VAR_EVENTS_LANDING_BUCKET": "bench-landing",  # never a destination (contract §5.5)
            "AWS_ACCESS_KEY_ID": devstack.LOCAL_AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": devstack.LOCAL_AWS_SECRET,
            "AWS_DEFAULT_REGION": devstack.LOCAL_REGION,
            "PYTHONPATH": str(REPO / "plugins"),
        }
    )
    return env


def _own_cpu() -> float:
    """CPU seconds of this process so far, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_pipeline() -> dict:
    """Run the pipeline's export of the benchmark hour (in a subprocess)."""
    # heavy imports before the clock starts (a worker has them loaded already)
    import pyarrow.parquet  # noqa: F401
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401

    from events_pipeline.export.client_hour import export_client_hour

    cpu0, start = _own_cpu(), time.perf_counter()
    summary = export_client_hour(CLIENT, HOUR, HOUR + timedelta(hours=1), run_id="bench")
    return {
        "seconds": time.perf_counter() - start,
        "timed_cpu_seconds": _own_cpu() - cpu0,
        "rows": summary["rows"],
        "bytes": summary["bytes"],
        "upload_seconds": summary["upload_seconds"],
        "mark_seconds": summary["mark_seconds"],
    }


def child_baseline(mark: bool = False) -> dict:
    """Run Airflow's SqlToS3Operator on the same rows (in a subprocess).

    :param mark: read the unexported rows and then run the pipeline's marking UPDATE (path c).
    """
    import pandas
    import pyarrow.parquet  # noqa: F401
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401
    from airflow.providers.amazon.aws.transfers.sql_to_s3 import SqlToS3Operator
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401

    del pandas

    op = SqlToS3Operator(
        task_id="sql_to_s3",
        sql_conn_id="events_db",
        query=BASELINE_UNEXPORTED_SQL if mark else BASELINE_SQL,
        parameters={"client_id": CLIENT, "hour_start": HOUR, "hour_end": HOUR + timedelta(hours=1)},
        s3_bucket=BASELINE_BUCKET,
        s3_key=f"{CLIENT}/dt={HOUR:%Y-%m-%d}/hour={HOUR:%H}/data.parquet",
        file_format="parquet",
        df_kwargs={"compression": "zstd"},
        replace=True,
    )
    cpu0, start = _own_cpu(), time.perf_counter()
    op.execute(context={})
    mark_seconds = 0.0
    if mark:
        import psycopg

        from events_pipeline.common.db import load_sql
        from events_pipeline.common.intervals import HourInterval
        from events_pipeline.export.client_hour import _params

        mark_start = time.perf_counter()
        with psycopg.connect(os.environ["BENCH_DSN"]) as conn:  # one transaction, committed on exit
            conn.execute(
                load_sql("export/mark_rows.sql"), _params(CLIENT, HourInterval(HOUR), claim="through")
            )
        mark_seconds = time.perf_counter() - mark_start
    seconds, timed_cpu = time.perf_counter() - start, _own_cpu() - cpu0
    import boto3

    from devtools import devstack

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
    return {
        "seconds": seconds,
        "timed_cpu_seconds": timed_cpu,
        "rows": rows,
        "bytes": head["ContentLength"],
        "mark_seconds": mark_seconds,
    }


def child_copy_floor() -> dict:
    """Only PostgreSQL's side of the pipeline: its SELECT as COPY ... TO STDOUT (text), bytes discarded."""
    import psycopg

    from events_pipeline.common.db import load_sql
    from events_pipeline.common.intervals import HourInterval
    from events_pipeline.export.client_hour import _params

    sql = "COPY (" + load_sql("export/select_rows.sql").strip().rstrip(";") + ") TO STDOUT (FORMAT csv)"
    rows = 0
    start = time.perf_counter()
    with psycopg.connect(os.environ["BENCH_DSN"], autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL work_mem = '64MB'")
        conn.execute("SET LOCAL jit = off")
        with conn.cursor().copy(sql, _params(CLIENT, HourInterval(HOUR), claim="none")) as copy:
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

    from devtools.demo_data import STORED_COLUMNS, make_event, stored_columns

    rng = random.Random(42)
    cols = STORED_COLUMNS
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
                copy.write_row((i, *stored_columns(ev)))
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
        # Every reset and marking leaves 100 % dead rows: autovacuum would then clean the
        # partition during whichever path runs next. The benchmark vacuums explicitly, untimed.
        conn.execute(f"ALTER TABLE {PARTITION} SET (autovacuum_enabled = false)")
        conn.execute("VACUUM ANALYZE events_log")


def reset_rows(dsn: str) -> None:
    """Make the hour unexported again, compact the table as fresh ingest leaves it, checkpoint (untimed).

    :param dsn: the benchmark database.
    """
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE events_log SET export_hour = NULL, export_status = 'pending', processed_at = NULL "
            "WHERE client_id = %s AND (export_hour IS NOT NULL OR export_status <> 'pending')",
            (CLIENT,),
        )
        conn.execute("DELETE FROM export_runs")
        conn.execute("VACUUM FULL events_log")
        conn.execute("VACUUM ANALYZE events_log")
        # An export marks rows an hour or more after they were written: a checkpoint came
        # in between, so the first change of each page writes its full-page image.
        conn.execute("CHECKPOINT")


PARTITION = f"events_log_p{HOUR:%Y%m%d}"
MARK_ALONE_SQL = """
UPDATE events_log SET export_hour = %(hour_start)s, export_status = 'exported', processed_at = now()
WHERE client_id = %(client_id)s AND export_status = 'pending' AND export_hour IS NULL
  AND created_at < %(hour_end)s
"""
#: Server settings compared by --server-variants, reset to the configuration file's values
#: (PostgreSQL's defaults) by --stock-server.
TUNED_NAMES = (
    "shared_buffers",
    "wal_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "wal_compression",
    "full_page_writes",
)
STOCK: dict[str, str | None] = dict.fromkeys(TUNED_NAMES)
#: Variants of --mark-variants: (label, fillfactor, keep unclaimed_idx, keep export_hour_idx,
#: server settings applied before the marking (on top of the run's)).
MarkVariant = tuple[str, int, bool, bool, dict[str, str | None]]
MARK_VARIANTS: tuple[MarkVariant, ...] = (
    ("today: fillfactor 100, both export indexes", 100, True, True, {}),
    ("today + wal_compression=pglz (server setting)", 100, True, True, {"wal_compression": "pglz"}),
    ("fillfactor 50, both export indexes", 50, True, True, {}),
    ("fillfactor 100, no export_hour_idx", 100, True, False, {}),
    ("fillfactor 50, no export_hour_idx", 50, True, False, {}),
    ("fillfactor 50, no export indexes (HOT)", 50, False, False, {}),
)
#: Variants of --server-variants: today's table under server settings, each on top of the
#: previous one unless it resets it. ``full_page_writes = off`` is NOT safe (a torn page after
#: a crash cannot be repaired): it is measured only to size the full-page images' share.
SERVER_VARIANTS: tuple[MarkVariant, ...] = (
    ("stock: PostgreSQL defaults", 100, True, True, STOCK),
    (
        "max_wal_size 8GB, checkpoint_timeout 30min",
        100,
        True,
        True,
        {"max_wal_size": "8GB", "checkpoint_timeout": "30min"},
    ),
    ("  + wal_compression pglz", 100, True, True, {"wal_compression": "pglz"}),
    (
        "  + full_page_writes off (unsafe, reference)",
        100,
        True,
        True,
        {"wal_compression": None, "full_page_writes": "off"},
    ),
    (
        "  + shared_buffers 1GB, wal_buffers 64MB",
        100,
        True,
        True,
        {"full_page_writes": None, "shared_buffers": "1GB", "wal_buffers": "64MB"},
    ),
    (
        "max_wal_size 8GB, checkpoint_timeout 30min (again)",
        100,
        True,
        True,
        {"shared_buffers": None, "wal_buffers": None},
    ),
)


def cpu_seconds(postmaster_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the server, the path's child processes and this process.

    ``server``: every PostgreSQL process alive now plus the ones that exited (counted in
    the postmaster's children times); ``child``: the finished path subprocesses (this
    process's children times); ``s3``: this process itself, i.e. the S3 server's threads.

    :param postmaster_pid: the PostgreSQL server's main process.
    """
    import psutil

    postmaster = psutil.Process(postmaster_pid)
    t = postmaster.cpu_times()
    server = t.user + t.system + t.children_user + t.children_system
    for proc in postmaster.children():
        with_times = proc.cpu_times()
        server += with_times.user + with_times.system
    me = psutil.Process().cpu_times()
    return {"server": server, "child": me.children_user + me.children_system, "s3": me.user + me.system}


def wal_and_size(dsn: str) -> tuple[int, int]:
    """Return the current WAL position (bytes) and the size of the hour's partition (bytes).

    :param dsn: the benchmark database.
    """
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()[0]
        size = conn.execute("SELECT pg_table_size(%s)", (PARTITION,)).fetchone()[0]
    return int(lsn), int(size)


def server_settings(dsn: str) -> dict[str, str]:
    """The running values of :data:`TUNED_NAMES` (as ``SHOW`` prints them).

    :param dsn: the benchmark database.
    """
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] for name in TUNED_NAMES
        }


def mark_variants(pg: Any, dsn: str, variants: tuple[MarkVariant, ...]) -> list[dict]:
    """Run the marking UPDATE alone under each of ``variants``; return its measurements.

    Before each: the variant's server settings (reload, or restart when one needs it),
    rows reset to unexported, the variant's fillfactor and indexes, the partition
    rewritten (VACUUM FULL) and a CHECKPOINT, so every variant pays the same full-page
    images (as a marking an hour after the load does).

    :param pg: the benchmark's server (``devstack.PostgresInstance``).
    :param dsn: the benchmark database.
    :param variants: :data:`MARK_VARIANTS` or :data:`SERVER_VARIANTS`.
    """
    import psycopg

    from devtools import devstack
    from events_pipeline.common.intervals import HourInterval
    from events_pipeline.export.client_hour import _params

    out = []
    params = _params(CLIENT, HourInterval(HOUR))
    base = server_settings(dsn)
    for label, fillfactor, unclaimed, hour_idx, settings in variants:
        if settings:
            devstack.configure_postgres(pg, settings)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE events_log SET export_hour = NULL, export_status = 'pending', processed_at = NULL "
                "WHERE export_hour IS NOT NULL"
            )
            conn.execute(f"ALTER TABLE {PARTITION} SET (fillfactor = {fillfactor})")
            conn.execute("DROP INDEX IF EXISTS events_log_unclaimed_idx")
            conn.execute("DROP INDEX IF EXISTS events_log_export_hour_idx")
            if unclaimed:
                conn.execute(
                    "CREATE INDEX events_log_unclaimed_idx ON events_log (client_id, created_at) "
                    "WHERE export_hour IS NULL AND client_id IS NOT NULL"
                )
            if hour_idx:
                conn.execute(
                    "CREATE INDEX events_log_export_hour_idx ON events_log (client_id, export_hour) "
                    "WHERE export_hour IS NOT NULL"
                )
            conn.execute(f"VACUUM FULL {PARTITION}")
            conn.execute(f"VACUUM ANALYZE {PARTITION}")
            conn.execute("CHECKPOINT")
            hot0, upd0 = conn.execute(
                "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables WHERE relname = %s", (PARTITION,)
            ).fetchone()
        wal0, size0 = wal_and_size(dsn)
        running = server_settings(dsn)
        with psycopg.connect(dsn) as conn:  # one transaction, committed on exit
            start = time.perf_counter()
            marked = conn.execute(MARK_ALONE_SQL, params).rowcount
        seconds = time.perf_counter() - start
        wal1, size1 = wal_and_size(dsn)
        time.sleep(1)  # table statistics are flushed with a delay
        with psycopg.connect(dsn, autocommit=True) as conn:
            hot1, upd1 = conn.execute(
                "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables WHERE relname = %s", (PARTITION,)
            ).fetchone()
        per_m = 1_000_000 / max(marked, 1)
        out.append(
            {
                "variant": label,
                "rows": marked,
                "seconds": seconds,
                "rows_per_s": marked / seconds,
                "wal_mb_per_m_rows": (wal1 - wal0) * per_m / 2**20,
                "table_mb_before": size0 / 2**20,
                "growth_mb_per_m_rows": (size1 - size0) * per_m / 2**20,
                "hot_share": (hot1 - hot0) / max(upd1 - upd0, 1),
                "server_settings": running,
            }
        )
        if settings and variants is MARK_VARIANTS:  # a table variant's setting is its own
            devstack.configure_postgres(pg, {name: base[name] for name in settings})
        r = out[-1]
        print(
            f"  {label:<44} {r['seconds']:>7.2f} s {r['rows_per_s']:>9,.0f} rows/s  "
            f"WAL {r['wal_mb_per_m_rows']:>6,.0f} MB/M rows  "
            f"growth {r['growth_mb_per_m_rows']:>6,.0f} MB/M rows  HOT {r['hot_share']:.0%}",
            flush=True,
        )
    return out


def versus_stock(
    pg: Any,
    dsn: str,
    settings: dict[str, str | None],
    rows: int,
    repeat: int,
    record: Any,
    results: list[dict],
) -> None:
    """Alternate the first run and operator + mark under PostgreSQL's defaults and ``settings``.

    Each repetition runs, under each settings in turn (reload, or restart when one
    needs it), ``SqlToS3Operator + mark`` then ``pipeline (first run)``, each on reset
    rows; prints each pair's ratio (c) and the medians, writes
    ``benchmarks/results/export_versus_stock.json``.

    :param pg: the benchmark's server (``devstack.PostgresInstance``).
    :param dsn: the benchmark database.
    :param settings: the run's server settings (the "tuned" side).
    :param rows: rows of the hour.
    :param repeat: repetitions of the pair of settings.
    :param record: the caller's ``record(name, kind)`` (appends to ``results``).
    :param results: the caller's measurements.
    """
    from devtools import devstack

    sides = (("stock", STOCK), ("tuned", {name: settings.get(name) for name in TUNED_NAMES}))
    pairs: list[dict] = []
    for i in range(repeat):
        for label, side in sides if i % 2 == 0 else sides[::-1]:
            devstack.configure_postgres(pg, side)
            running = server_settings(dsn)
            reset_rows(dsn)
            record(f"{label}: SqlToS3Operator + mark", "baseline_mark")
            reset_rows(dsn)
            record(f"{label}: pipeline (first run)", "pipeline")
            op_mark, first = results[-2], results[-1]
            pairs.append(
                {
                    "settings": label,
                    "server_settings": running,
                    "op_mark_seconds": op_mark["seconds"],
                    "op_mark_mark_seconds": op_mark["mark_seconds"],
                    "first_run_seconds": first["seconds"],
                    "first_run_mark_seconds": first["mark_seconds"],
                    "c_ratio": op_mark["seconds"] / first["seconds"],
                    "first_run_wal_mb_per_m_rows": first["wal_mb_per_m_rows"],
                    "op_mark_wal_mb_per_m_rows": op_mark["wal_mb_per_m_rows"],
                    "first_run_growth_mb_per_m_rows": first["growth_mb_per_m_rows"],
                    "loadavg_1min": first["loadavg_1min_before"],
                    "first_run_cpu_seconds": first["cpu_seconds"],
                    "op_mark_cpu_seconds": op_mark["cpu_seconds"],
                }
            )
            print(f"    -> {label}: (c) {pairs[-1]['c_ratio']:.2f}x", flush=True)
    print()
    medians = {}
    for label, _ in sides:
        mine = [p for p in pairs if p["settings"] == label]
        medians[label] = {
            key: statistics.median(p[key] for p in mine)
            for key in ("c_ratio", "first_run_seconds", "op_mark_seconds", "first_run_mark_seconds")
        }
        m = medians[label]
        print(
            f"{label}: median (c) {m['c_ratio']:.2f}x, first run {m['first_run_seconds']:.2f} s "
            f"(mark {m['first_run_mark_seconds']:.2f} s), operator + mark {m['op_mark_seconds']:.2f} s"
        )
    out = REPO / "benchmarks" / "results" / "export_versus_stock.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "rows": rows,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        "pairs": pairs,
        "medians": medians,
        "runs": results,
    }
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out.relative_to(REPO)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="events loaded into the hour")
    parser.add_argument("--repeat", type=int, default=1, help="re-runs of each path after the first run")
    parser.add_argument("--child", choices=["pipeline", "baseline", "baseline_mark", "copy"])
    parser.add_argument(
        "--mark-variants",
        action="store_true",
        help="measure the marking UPDATE alone under table variants (fillfactor, indexes) instead",
    )
    parser.add_argument(
        "--server-variants",
        action="store_true",
        help="measure the marking UPDATE alone under server settings (WAL, checkpoints, buffers) instead",
    )
    parser.add_argument(
        "--versus-stock",
        action="store_true",
        help="run only the first run and operator + mark, alternately under PostgreSQL's defaults and "
        "under the run's settings, --repeat times (the server settings' effect, side by side)",
    )
    parser.add_argument(
        "--stock-server",
        action="store_true",
        help="run PostgreSQL with its default settings instead of devstack.SERVER_SETTINGS",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting on top of the others (repeatable), e.g. wal_compression=pglz",
    )
    args = parser.parse_args()

    if args.child:
        kinds = {
            "pipeline": child_pipeline,
            "baseline": child_baseline,
            "baseline_mark": lambda: child_baseline(mark=True),
            "copy": child_copy_floor,
        }
        result = kinds[args.child]()
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    import psycopg

    from devtools import devstack
    from events_pipeline.common.migrations import apply_migrations
    from events_pipeline.common.partitions import ensure_daily_partitions

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    settings: dict[str, str | None] = dict(STOCK) if args.stock_server else dict(devstack.SERVER_SETTINGS)
    settings.update(dict(item.split("=", 1) for item in args.pg_setting))
    pg = devstack.start_postgres(work / "pg" / "data", settings=settings)
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
        running = server_settings(dsn)
        print("server: " + ", ".join(f"{k}={v}" for k, v in running.items()), flush=True)
        env = _env(pg.airflow_uri("events"), s3.endpoint_url, work / "airflow")
        env["BENCH_S3_ENDPOINT"] = s3.endpoint_url
        env["BENCH_DSN"] = dsn

        results: list[dict] = []
        if args.mark_variants or args.server_variants:
            variants = mark_variants(pg, dsn, SERVER_VARIANTS if args.server_variants else MARK_VARIANTS)
            name = "export_server_variants.json" if args.server_variants else "export_mark_variants.json"
            out = REPO / "benchmarks" / "results" / name
            out.parent.mkdir(parents=True, exist_ok=True)
            summary = {
                "rows": args.rows,
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
                "variants": variants,
            }
            out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            print(f"\nwrote {out.relative_to(REPO)}")
            return

        def record(name: str, kind: str) -> None:
            wal0, size0 = wal_and_size(dsn)
            load = os.getloadavg()[0]
            cpu0 = cpu_seconds(pg.server.get_pid())
            r = run_child(kind, env)
            cpu1 = cpu_seconds(pg.server.get_pid())
            r["cpu_seconds"] = {k: cpu1[k] - cpu0[k] for k in cpu0}
            r["loadavg_1min_before"] = load
            wal1, size1 = wal_and_size(dsn)
            r["path"] = name
            r["rows_per_s"] = r["rows"] / r["seconds"]
            r["wal_mb_per_m_rows"] = (wal1 - wal0) / 2**20 * 1_000_000 / r["rows"]
            r["growth_mb_per_m_rows"] = (size1 - size0) / 2**20 * 1_000_000 / r["rows"]
            results.append(r)
            print(
                f"  {name:<26} {r['rows']:>10,} rows {r['seconds']:>8.2f} s {r['rows_per_s']:>10,.0f} rows/s "
                f"peak {r['peak_rss_mb']:>7.0f} MB  WAL {r['wal_mb_per_m_rows']:>6,.0f} MB/M rows  "
                f"growth {r['growth_mb_per_m_rows']:>6,.0f} MB/M rows  CPU s: "
                + " ".join(f"{k} {v:.1f}" for k, v in r["cpu_seconds"].items())
                + f" (child timed {r.get('timed_cpu_seconds', 0.0):.1f})",
                flush=True,
            )

        if args.versus_stock:
            versus_stock(pg, dsn, settings, args.rows, args.repeat, record, results)
            return

        for _ in range(args.repeat):
            reset_rows(dsn)
            record("SqlToS3Operator + mark", "baseline_mark")  # (c) reads unexported rows, marks them
            reset_rows(dsn)
            record("pipeline (first run)", "pipeline")  # (b) exports and marks in one snapshot
            record("pipeline (re-run)", "pipeline")  # (a) the data path alone
            record("SqlToS3Operator", "baseline")
            record("COPY TO STDOUT only", "copy")

        names = [
            "SqlToS3Operator",
            "SqlToS3Operator + mark",
            "pipeline (first run)",
            "pipeline (re-run)",
            "COPY TO STDOUT only",
        ]

        def runs_of(name: str) -> list[dict]:
            return [r for r in results if r["path"] == name]

        def best(name: str) -> dict:
            return max(runs_of(name), key=lambda r: r["rows_per_s"])

        def median(name: str) -> float:
            return statistics.median(r["rows_per_s"] for r in runs_of(name))

        base, base_mark = best("SqlToS3Operator"), best("SqlToS3Operator + mark")
        first, rerun = best("pipeline (first run)"), best("pipeline (re-run)")
        floor = best("COPY TO STDOUT only")
        ratios = {
            "a_data_path_rerun_vs_sqltos3": rerun["rows_per_s"] / base["rows_per_s"],
            "b_first_run_vs_sqltos3": first["rows_per_s"] / base["rows_per_s"],
            "c_first_run_vs_sqltos3_plus_mark": first["rows_per_s"] / base_mark["rows_per_s"],
            "copy_floor_vs_sqltos3": floor["rows_per_s"] / base["rows_per_s"],
        }
        summary = {
            "rows": args.rows,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
            "server_settings": running,
            "runs": results,
            "best_rows_per_s": {n: best(n)["rows_per_s"] for n in names},
            "median_rows_per_s": {n: median(n) for n in names},
            **ratios,
            "peak_rss_mb": {n: max(r["peak_rss_mb"] for r in runs_of(n)) for n in names},
            "notes": (
                "pipeline writes each part to TWO buckets (client + backup) plus manifests and, on the "
                "first run, marks every row exported (one UPDATE); SqlToS3Operator writes one object to "
                "one bucket; '+ mark' adds the same marking UPDATE after it"
            ),
        }
        print()
        print(f"{'path':<26} {'best rows/s':>12} {'median':>10} {'seconds':>9} {'peak MB':>9} {'vs op':>7}")
        for r in (base, base_mark, first, rerun, floor):
            print(
                f"{r['path']:<26} {r['rows_per_s']:>12,.0f} {median(r['path']):>10,.0f} {r['seconds']:>9.2f} "
                f"{r['peak_rss_mb']:>9.0f} {r['rows_per_s'] / base['rows_per_s']:>6.2f}x"
            )
        print(
            f"\n(a) data path (re-run) vs op:  {ratios['a_data_path_rerun_vs_sqltos3']:.2f}x"
            f"\n(b) first run vs op:           {ratios['b_first_run_vs_sqltos3']:.2f}x"
            f"\n(c) first run vs op + mark:    {ratios['c_first_run_vs_sqltos3_plus_mark']:.2f}x"
            f"\n    mark UPDATE: pipeline {first.get('mark_seconds', 0):.2f} s, "
            f"operator path {base_mark.get('mark_seconds', 0):.2f} s"
            f"\n    WAL per million rows: pipeline first run {first['wal_mb_per_m_rows']:,.0f} MB, "
            f"operator + mark {base_mark['wal_mb_per_m_rows']:,.0f} MB; partition growth per million rows: "
            f"{first['growth_mb_per_m_rows']:,.0f} MB and {base_mark['growth_mb_per_m_rows']:,.0f} MB"
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
