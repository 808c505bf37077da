"""Benchmark: retention of one expired day and archival vs the original design's plain DELETE / UPDATE.

Loads ``--rows`` events over ``--days`` daily partitions with COPY into a
throw-away embedded PostgreSQL, then, on the same data:

1. archival: the original design's ``UPDATE ... SET export_status='archived' WHERE
   export_status='pending' AND created_at < cutoff`` (in a transaction, rolled
   back) vs :func:`events_pipeline.maintenance.archival.run_archival` (bounded batches);
2. retention of the oldest day, wholly exported (every row expired), then of the
   next day (0.5 % of its rows pending/archived survive): the original design's ``DELETE
   FROM events_log WHERE export_status='exported' AND processed_at < cutoff``
   (rolled back) vs :func:`events_pipeline.maintenance.retention.run_retention` (partition
   dropped / rebuilt);
3. ingest stall: a COPY loop (2,000-row batches into the newest partition) runs
   while a third day expires, once under the original design's DELETE, once under ours;
   the longest COPY is reported (WAL there includes ingest's, so it is not compared).

Seconds, rows/s, WAL bytes (``pg_current_wal_lsn`` difference) and the table
size afterwards are printed side by side and written to
``benchmarks/results/retention.json``.

Usage: ``.venv/bin/python benchmarks/bench_retention.py [--rows 10000000] [--days 10]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from devtools import devstack  # noqa: E402
from events_pipeline.common.migrations import apply_migrations  # noqa: E402
from events_pipeline.common.partitions import day_bounds, ensure_daily_partitions  # noqa: E402
from events_pipeline.maintenance.archival import run_archival  # noqa: E402
from events_pipeline.maintenance.retention import run_retention  # noqa: E402

BASE = date(2026, 10, 1)
CLIENTS = ("acme", "globex", "initech")
COPY_COLUMNS = (
    "event_type, visitor_id, site_id, timestamp, ip_address, raw_event_data, created_at, "
    "processed_at, client_id, export_status, privacy_level, export_hour"
)


def _lines(
    day: date, per_day: int, first: int, n: int, *, recent: bool, seed: int, whole: bool = False
) -> bytes:
    """COPY text lines ``first .. first+n`` of a day of ``per_day`` rows (~450-byte raw_event_data)."""
    start = day_bounds(day)[0]
    step = 86400.0 / per_day
    out = []
    for i in range(first, first + n):
        created = start + timedelta(seconds=i * step)
        client = CLIENTS[i % 3]
        visitor = f"v{(i * 7919 + seed) % 200000}"
        ip = f"{(i % 223) + 1}.{(i >> 3) % 256}.{(i >> 5) % 256}.{(i % 250) + 1}"
        bucket = (i * 2654435761 + seed) % 1000
        if recent:
            status = "exported" if bucket < 500 else "pending"
        elif whole:
            status = "exported"
        else:
            status = "exported" if bucket < 995 else ("pending" if bucket < 998 else "archived")
        ts = created.strftime("%Y-%m-%d %H:%M:%S.%f+00")
        if status == "exported":
            processed = (created + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S+00")
            hour = created.strftime("%Y-%m-%d %H:00:00+00")
        else:
            processed = hour = "\\N"
        raw = (
            f'{{"event_type":"pageview","site_id":"www.{client}.com","visitor_id":"{visitor}",'
            f'"session_id":"s{i % 50000}",'
            f'"url":"https://www.{client}.com/products/shoes/running?utm_source=news&utm_medium=email",'
            '"user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0",'
            f'"ip_address":"{ip}","properties":{{"value":{i % 997},"currency":"EUR","items":[1,2,3]}}}}'
        )
        out.append(
            f"pageview\t{visitor}\twww.{client}.com\t{ts}\t{ip}\t{raw}\t{ts}\t{processed}\t{client}\t"
            f"{status}\tstandard\t{hour}\n"
        )
    return "".join(out).encode()


def _wal(conn) -> int:
    return int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')").fetchone()[0])


def _size(conn) -> int:
    return int(
        conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
            "WHERE inhparent = 'events_log'::regclass"
        ).fetchone()[0]
    )


def load(conn, rows: int, days: int) -> float:
    """Create partitions and COPY the data; return seconds."""
    ensure_daily_partitions(conn, BASE, BASE + timedelta(days=days))
    conn.autocommit = True
    per_day = rows // days
    t0 = time.monotonic()
    chunk = 100_000
    for d in range(days):
        day = BASE + timedelta(days=d)
        recent = d >= days - 2
        done = 0
        while done < per_day:
            n = min(chunk, per_day - done)
            data = _lines(day, per_day, done, n, recent=recent, seed=d, whole=d in (0, 3))
            with conn.cursor() as cur, cur.copy(f"COPY events_log ({COPY_COLUMNS}) FROM STDIN") as cp:
                cp.write(data)
            done += n
        print(f"  loaded day {day} ({per_day:,} rows) at {time.monotonic() - t0:.0f}s", flush=True)
    # The export's record of every hour it published (what the real export writes):
    # finished when its last row was marked (the rows' processed_at is created + 1 h,
    # in whole seconds, so the hour's last one is h + 1:59:59).
    conn.execute(
        "INSERT INTO export_runs (client_id, interval_start, interval_end, status, row_count, finished_at) "
        "SELECT c, h, h + interval '1 hour', 'succeeded', 0, h + interval '2 hours' - interval '1 second' "
        "FROM unnest(%s::text[]) AS c, "
        "generate_series(%s::timestamptz, %s::timestamptz, interval '1 hour') AS h "
        "ON CONFLICT DO NOTHING",
        (list(CLIENTS), day_bounds(BASE)[0], day_bounds(BASE + timedelta(days=days))[0]),
    )
    # An 8-day-old partition has been vacuumed by autovacuum (PG 13+ vacuums after inserts too).
    conn.execute("VACUUM (ANALYZE) events_log")
    return time.monotonic() - t0


def timed(conn, fn) -> dict:
    """Run ``fn()``; return seconds, WAL bytes and fn's result."""
    w0, t0 = _wal(conn), time.monotonic()
    result = fn()
    seconds = time.monotonic() - t0
    return {"seconds": round(seconds, 3), "wal_bytes": _wal(conn) - w0, "result": result}


def seed_statement(dsn: str, statement: str, params: tuple) -> dict:
    """Run the original design's statement in a transaction, measure it, roll it back (same data for ours)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        w0, t0 = _wal(conn), time.monotonic()
        n = conn.execute(statement, params).rowcount
        seconds = time.monotonic() - t0
        wal = _wal(conn) - w0
        conn.rollback()
    return {"seconds": round(seconds, 3), "wal_bytes": wal, "rows": n}


class IngestLoop(threading.Thread):
    """COPY 2,000-row batches into today's partition until stopped; keep each COPY's latency."""

    def __init__(self, dsn: str, day: date) -> None:
        super().__init__(daemon=True)
        self.dsn, self.day = dsn, day
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.rows = 0

    def run(self) -> None:
        import psycopg

        data = _lines(self.day, 2000, 0, 2000, recent=True, seed=7)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                t0 = time.monotonic()
                with conn.cursor() as cur, cur.copy(f"COPY events_log ({COPY_COLUMNS}) FROM STDIN") as cp:
                    cp.write(data)
                self.latencies.append(time.monotonic() - t0)
                self.rows += 2000
                time.sleep(0.02)


def with_ingest(dsn: str, day: date, fn) -> dict:
    """Run ``fn()`` while an ingest loop COPYs into ``day``; return fn's measures plus the stall."""
    loop = IngestLoop(dsn, day)
    loop.start()
    time.sleep(1.0)
    baseline = sorted(loop.latencies)
    n0 = len(loop.latencies)
    out = fn()
    during = loop.latencies[n0:]
    time.sleep(0.5)
    loop.stop.set()
    loop.join()
    out["ingest_copies_during"] = len(during)
    out["ingest_max_copy_s"] = round(max(during), 3) if during else None
    out["ingest_median_copy_s_before"] = round(baseline[len(baseline) // 2], 3) if baseline else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the data folder")
    args = ap.parse_args()
    import psycopg

    work = Path(tempfile.mkdtemp(prefix="bench-retention-"))
    pg = devstack.start_postgres(work / "pg" / "data")
    pg.create_database("bench")
    dsn = pg.dsn("bench")
    results: dict = {"rows": args.rows, "days": args.days, "started_at": datetime.now(UTC).isoformat()}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_migrations(conn)
            conn.autocommit = True
            for c in CLIENTS:
                conn.execute(
                    "INSERT INTO clients (client_id, name, export_bucket, export_prefix) "
                    "VALUES (%s, %s, 'b', 'p')",
                    (c, c),
                )
            conn.execute(
                "INSERT INTO billing_runs (day) SELECT generate_series(%s::date, %s::date, '1 day')::date",
                (BASE, BASE + timedelta(days=args.days)),
            )
            print(f"loading {args.rows:,} rows over {args.days} days with COPY ...", flush=True)
            load_s = load(conn, args.rows, args.days)
            results["load"] = {"seconds": round(load_s, 1), "rows_per_s": round(args.rows / load_s)}
            results["size_before"] = _size(conn)
            print(
                f"loaded in {load_s:.0f}s ({args.rows / load_s:,.0f} rows/s), size {_size(conn) / 1e9:.2f} GB"
            )

            # 1. archival: pending rows of the two oldest days (now = day 2 + 30 days).
            now_b = day_bounds(BASE + timedelta(days=2))[0] + timedelta(days=30)
            cutoff_b = now_b - timedelta(days=30)
            conn.execute("CHECKPOINT")
            seed_arch = seed_statement(
                dsn,
                "UPDATE events_log SET export_status = 'archived' WHERE export_status = 'pending' "
                "AND created_at < %s",
                (cutoff_b,),
            )
            conn.execute("CHECKPOINT")
            ours_arch = timed(conn, lambda: run_archival(conn, now=now_b)["archived"])
            results["archival"] = {"seed": seed_arch, "ours": {**ours_arch, "rows": ours_arch.pop("result")}}
            # The next day's run: the original UPDATE reads the same old days again, ours skips days done.
            seed_again = seed_statement(
                dsn,
                "UPDATE events_log SET export_status = 'archived' WHERE export_status = 'pending' "
                "AND created_at < %s",
                (cutoff_b + timedelta(days=1),),
            )
            ours_again = timed(conn, lambda: run_archival(conn, now=now_b + timedelta(days=1))["archived"])
            results["archival_next_day"] = {
                "seed": seed_again,
                "ours": {**ours_again, "rows": ours_again.pop("result")},
            }

            # 2. retention of day 0, wholly exported: every row expired (now = day 1 + 7 days + 1 h).
            # 3. retention of day 1: expired except 0.5 % pending/archived rows (one day later).
            # 4. retention of day 2 (one more day later) while an ingest COPY loop runs.
            now_a = day_bounds(BASE + timedelta(days=1))[0] + timedelta(days=7, hours=1)
            for key, offset in (("retention_whole_day", 0), ("retention_day_with_survivors", 1)):
                now = now_a + timedelta(days=offset)
                conn.execute("CHECKPOINT")
                seed_ret = seed_statement(
                    dsn,
                    "DELETE FROM events_log WHERE export_status = 'exported' AND processed_at < %s",
                    (now - timedelta(days=7),),
                )
                seed_ret["size_after"] = _size(conn)  # a committed DELETE frees no file space either
                conn.execute("CHECKPOINT")
                ours = timed(conn, lambda now=now: run_retention(conn, now=now))
                res = ours.pop("result")
                part = next(p for p in res.partitions if p.mode not in ("skip", "deferred"))
                results[key] = {
                    "seed": seed_ret,
                    "ours": {
                        **ours,
                        "rows": res.deleted,
                        "mode": part.mode,
                        "proof": part.proof,
                        "copy_s": part.copy_s,
                        "partition_seconds": {p.partition: p.seconds for p in res.partitions},
                        "kept": part.kept,
                        "lock_wait_s": part.lock_wait_s,
                        "detached_s": part.detached_s,
                        "drop_s": part.drop_s,
                        "bytes_freed": part.bytes_freed,
                        # the rows left events_log before the DROP began; everything else is kept in
                        "rows_gone_s": round(ours["seconds"] - part.drop_s, 3),
                        "size_after": _size(conn),
                    },
                }

            now_c = now_a + timedelta(days=2)
            today = BASE + timedelta(days=args.days - 1)
            stall_seed = with_ingest(
                dsn,
                today,
                lambda: seed_statement(
                    dsn,
                    "DELETE FROM events_log WHERE export_status = 'exported' AND processed_at < %s",
                    (now_c - timedelta(days=7),),
                ),
            )
            stall_ours = with_ingest(dsn, today, lambda: timed(conn, lambda: run_retention(conn, now=now_c)))
            r2 = stall_ours.pop("result")
            p2 = next(p for p in r2.partitions if p.mode not in ("skip", "deferred"))
            stall_ours.update({"rows": r2.deleted, "mode": p2.mode, "lock_wait_s": p2.lock_wait_s})
            results["ingest_during_retention"] = {"seed": stall_seed, "ours": stall_ours}

            # 5. what the original design's DELETE really costs: committed, then the VACUUM it needs (day 3,
            #    wholly exported like day 0).
            now_d = now_c + timedelta(days=1)
            conn.execute("CHECKPOINT")
            w0, t0 = _wal(conn), time.monotonic()
            deleted = conn.execute(
                "DELETE FROM events_log WHERE export_status = 'exported' AND processed_at < %s",
                (now_d - timedelta(days=7),),
            ).rowcount
            t_delete = time.monotonic() - t0
            conn.execute("VACUUM events_log")
            results["seed_delete_committed_plus_vacuum"] = {
                "rows": deleted,
                "delete_seconds": round(t_delete, 3),
                "seconds": round(time.monotonic() - t0, 3),
                "wal_bytes": _wal(conn) - w0,
                "size_after": _size(conn),
            }
    finally:
        pg.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    _report(results)
    out = REPO / "benchmarks" / "results" / "retention.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwritten to {out.relative_to(REPO)}")
    return 0


def _report(r: dict) -> None:
    print(
        f"\n{r['rows']:,} rows over {r['days']} days; "
        f"load {r['load']['seconds']}s ({r['load']['rows_per_s']:,}/s)"
    )
    header = (
        f"{'scenario':36} {'method':6} {'rows':>10} {'seconds':>9} {'rows/s':>11} "
        f"{'WAL MB':>9} {'size GB':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, key in (
        ("archival (2 oldest days)", "archival"),
        ("archival, next day's run", "archival_next_day"),
        ("retention, whole expired day", "retention_whole_day"),
        ("retention, day with 0.5% survivors", "retention_day_with_survivors"),
    ):
        for method in ("seed", "ours"):
            m = r[key][method]
            rate = m["rows"] / m["seconds"] if m["seconds"] else 0
            size = m.get("size_after")
            print(
                f"{name:36} {method:6} {m['rows']:>10,} {m['seconds']:>9.3f} {rate:>11,.0f} "
                f"{m['wal_bytes'] / 1e6:>9.1f} {size / 1e9 if size else float('nan'):>8.2f}"
            )
        s, o = r[key]["seed"], r[key]["ours"]
        ratio = s["seconds"] / o["seconds"] if o["seconds"] else float("inf")
        wal_ratio = s["wal_bytes"] / o["wal_bytes"] if o["wal_bytes"] else float("inf")
        r[key]["speedup"] = round(ratio, 1)
        r[key]["wal_ratio"] = round(wal_ratio, 1)
        print(f"{'':36} ratio  seed/ours: time {ratio:.1f}x, WAL {wal_ratio:.1f}x")
    sv = r["seed_delete_committed_plus_vacuum"]
    print(
        f"seed DELETE committed + VACUUM (a whole day of the same shape): {sv['rows']:,} rows, "
        f"DELETE {sv['delete_seconds']}s, with VACUUM {sv['seconds']}s, WAL {sv['wal_bytes'] / 1e6:.1f} MB, "
        f"size after {sv['size_after'] / 1e9:.2f} GB (VACUUM makes the space reusable, the files keep it)"
    )
    w = r["retention_whole_day"]
    s_, o = w["seed"], w["ours"]
    gone = o["rows_gone_s"]
    w["speedup_rows_gone"] = round(s_["seconds"] / gone, 1) if gone else None
    w["speedup_space_back_vs_delete_vacuum"] = round(sv["seconds"] / o["seconds"], 1)
    print(
        f"whole expired day, step by step: rows gone from events_log after {gone:.3f}s "
        f"(seed DELETE {s_['seconds']:.3f}s: {w['speedup_rows_gone']}x); then DROP returned "
        f"{o['bytes_freed'] / 1e6:,.0f} MB to the OS in {o['drop_s']:.3f}s, no lock on events_log; "
        f"all done after {o['seconds']:.3f}s ({w['speedup']}x the original design's DELETE, "
        f"{w['speedup_space_back_vs_delete_vacuum']}x its DELETE + VACUUM)"
    )
    st = r["ingest_during_retention"]
    for method in ("seed", "ours"):
        m = st[method]
        print(
            f"ingest during retention ({method}): {m['ingest_copies_during']} COPYs of 2,000 rows, longest "
            f"{m['ingest_max_copy_s']}s (median before {m['ingest_median_copy_s_before']}s); "
            f"retention {m['seconds']}s, {m['rows']:,} rows"
            + (f", mode {m['mode']}, parent-lock wait {m['lock_wait_s']}s" if method == "ours" else "")
        )


if __name__ == "__main__":
    sys.exit(main())
