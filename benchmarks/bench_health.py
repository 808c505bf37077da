"""Benchmark: cost of each hourly health check and monitoring query vs. the original design's versions.

Fills a throw-away embedded PostgreSQL with ``--rows`` events spread over
``--days`` daily partitions ending at the current hour (the shape of a running
pipeline: older hours exported with their ``export_runs`` rows, the last hour
pending and unclaimed, ~2% unattributed), then times every query of
``include/sql/health/`` and ``include/sql/monitoring/`` for the last hour
(median of ``--repeat`` runs) next to the original design's way where the original design had one:

- pending exports: ours (partial indexes + ``export_runs``) vs. the direct
  ``WHERE export_status = 'pending' AND client_id IS NOT NULL AND created_at < cutoff``;
- table size: ours (partition tree, ``reltuples``) vs. the original design's
  ``pg_total_relation_size('events_log')`` + ``count(*)`` of the whole table.

Prints a table and writes ``benchmarks/results/health.json``.

Usage: ``.venv/bin/python benchmarks/bench_health.py [--rows 2000000] [--days 7] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from devtools import devstack  # noqa: E402
from events_pipeline.common.db import load_sql  # noqa: E402
from events_pipeline.common.migrations import apply_migrations  # noqa: E402
from events_pipeline.common.partitions import ensure_daily_partitions  # noqa: E402

CLIENTS = [f"client{i:02d}" for i in range(20)]

SEED_PENDING = """
SELECT client_id, count(*), min(created_at)
FROM events_log
WHERE export_status = 'pending' AND client_id IS NOT NULL
  AND created_at < %(interval_end)s::timestamptz - interval '180 minutes'
GROUP BY client_id
"""
SEED_TABLE_SIZE = """
SELECT pg_size_pretty(pg_total_relation_size('events_log')) AS table_size,
       (SELECT count(*) FROM events_log) AS total_rows,
       (SELECT count(*) FROM events_log
        WHERE created_at > %(interval_end)s::timestamptz - interval '24 hours') AS last_24h
"""


def fill(conn: Any, rows: int, days: int, end: datetime) -> float:
    """Insert ``rows`` events over ``days`` days before ``end`` (server-side generate_series)."""
    start = end - timedelta(days=days)
    ensure_daily_partitions(conn, start.date(), end.date() + timedelta(days=1))
    for c in CLIENTS:
        conn.execute(
            "INSERT INTO clients (client_id, name, export_bucket, export_prefix, created_at) "
            "VALUES (%s, %s, 'b', %s, %s)",
            (c, c, c, start - timedelta(days=1)),
        )
    began = time.monotonic()
    conn.execute(
        """
        INSERT INTO events_log (event_type, site_id, "timestamp", raw_event_data, created_at, client_id,
                                batch_id, export_status, export_hour, processed_at)
        SELECT 'pageview', s.site, s.created, jsonb_build_object('n', s.g), s.created, s.client,
               'b' || (s.g / 50), s.status, s.hour, CASE WHEN s.status = 'exported' THEN s.created END
        FROM (
            SELECT g, created,
                   CASE WHEN g %% 50 = 0 THEN NULL
                        ELSE 'client' || lpad((g %% 20)::text, 2, '0') END AS client,
                   CASE WHEN g %% 50 = 0 THEN 'unknown' || (g %% 7) || '.example'
                        ELSE 'client' || lpad((g %% 20)::text, 2, '0') || '.example' END AS site,
                   CASE WHEN created >= %(end)s::timestamptz - interval '1 hour' OR g %% 50 = 0
                        THEN 'pending' ELSE 'exported' END AS status,
                   CASE WHEN created < %(end)s::timestamptz - interval '1 hour' AND g %% 50 <> 0
                        THEN date_trunc('hour', created, 'UTC') END AS hour
            FROM (
                SELECT g, %(start)s::timestamptz
                          + (g::float8 / %(rows)s) * (%(end)s::timestamptz - %(start)s::timestamptz)
                          AS created
                FROM generate_series(0, %(rows)s - 1) AS g
            ) t
        ) s
        """,
        {"start": start, "end": end, "rows": rows},
    )
    conn.execute(
        """
        INSERT INTO export_runs (client_id, interval_start, interval_end, status, row_count)
        SELECT c.client_id, h, h + interval '1 hour', 'succeeded', 0
        FROM clients c, generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '2 hours',
                                        interval '1 hour') AS h
        """,
        {"start": start, "end": end},
    )
    conn.execute(
        """
        INSERT INTO landing_files (bucket, key, etag, status, rows_loaded, rows_rejected,
                                   loaded_at, created_at)
        SELECT 'landing', 'incoming/f' || g || '.ndjson', md5(g::text), 'processed', 1000, g %% 3, t, t
        FROM generate_series(1, %(files)s) AS g,
             LATERAL (SELECT %(start)s::timestamptz
                             + g * ((%(end)s::timestamptz - %(start)s::timestamptz) / %(files)s)) AS x(t)
        """,
        {"start": start, "end": end, "files": max(rows // 1000, 1)},
    )
    conn.execute("VACUUM ANALYZE")
    return time.monotonic() - began


def timed(conn: Any, sql: str, params: dict[str, Any], repeat: int) -> tuple[float, int]:
    """Median milliseconds of ``repeat`` runs of ``sql`` and its row count."""
    times, count = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        count = len(conn.execute(sql, params if "%(" in sql else None).fetchall())
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), count


def main() -> None:
    """Fill, time, print, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import psycopg

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    params = {
        "interval_start": end - timedelta(hours=1),
        "interval_end": end,
        "min_rate": 0.95,
        "min_events": 100,
        "max_pending_minutes": 180,
        "batch_lookback_minutes": 60,
        "max_rate": 0.02,
        "min_lines": 100,
        "export_lookback_hours": 24,
        "export_grace_minutes": 60,
    }
    work = Path(tempfile.mkdtemp(prefix="bench-health-"))
    pg = devstack.start_postgres(work / "pg" / "data")
    pg.create_database("bench")
    results: dict[str, Any] = {
        "rows": args.rows,
        "days": args.days,
        "started_at": datetime.now(UTC).isoformat(),
    }
    try:
        with psycopg.connect(pg.dsn("bench"), autocommit=True) as conn:
            apply_migrations(conn)
            print(f"filling {args.rows:,} rows over {args.days} days ...", flush=True)
            results["fill_seconds"] = round(fill(conn, args.rows, args.days, end), 1)
            queries: list[tuple[str, str, str | None]] = [
                ("health/attribution_rate", load_sql("health/attribution_rate.sql"), None),
                ("health/pending_exports", load_sql("health/pending_exports.sql"), SEED_PENDING),
                ("health/batch_consistency", load_sql("health/batch_consistency.sql"), None),
                ("health/rejected_rate", load_sql("health/rejected_rate.sql"), None),
                ("health/export_runs", load_sql("health/export_runs.sql"), None),
            ]
            for name in ("batch_consistency", "attribution_rate", "export_pipeline_health", "index_usage"):
                queries.append((f"monitoring/{name}", load_sql(f"monitoring/{name}.sql"), None))
            queries.append(("monitoring/table_size", load_sql("monitoring/table_size.sql"), SEED_TABLE_SIZE))
            rows_out = []
            for name, sql, seed in queries:
                ms, n = timed(conn, sql, params, args.repeat)
                entry: dict[str, Any] = {"query": name, "ms": round(ms, 1), "rows": n}
                if seed:
                    seed_ms, _ = timed(conn, seed, params, args.repeat)
                    entry["seed_ms"] = round(seed_ms, 1)
                    entry["speedup"] = round(seed_ms / ms, 1) if ms else None
                rows_out.append(entry)
            results["queries"] = rows_out
            seed_size = conn.execute("SELECT pg_total_relation_size('events_log')").fetchone()[0]
            ours_size = conn.execute(
                "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('events_log')"
            ).fetchone()[0]
            results["size_bytes"] = {
                "seed_pg_total_relation_size": seed_size,
                "partition_tree_sum": int(ours_size),
            }
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{args.rows:,} rows over {args.days} days, filled in {results['fill_seconds']} s; "
        f"median of {args.repeat}"
    )
    print(f"{'query':32} {'ours ms':>9} {'seed ms':>9} {'speedup':>8} {'rows':>6}")
    for e in results["queries"]:
        seed_ms = f"{e['seed_ms']:.1f}" if "seed_ms" in e else "-"
        speedup = f"{e['speedup']}x" if e.get("speedup") else "-"
        print(f"{e['query']:32} {e['ms']:>9.1f} {seed_ms:>9} {speedup:>8} {e['rows']:>6}")
    print(
        "events_log size: original design's pg_total_relation_size = "
        f"{results['size_bytes']['seed_pg_total_relation_size']} "
        f"bytes, sum over partitions = {results['size_bytes']['partition_tree_sum']:,} bytes"
    )
    out = REPO / "benchmarks" / "results" / "health.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
