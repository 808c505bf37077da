"""Benchmark: one hour of MANY clients through the real events_export DAG, end to end.

Usage::

    PYTHONPATH=plugins:. .venv/bin/python benchmarks/bench_export_clients.py \
        [--clients 1000] [--events 10] [--mode dagtest|scheduler|both] [--groups 8] \
        [--per-client-clients 203] [--parallelism 4]

Starts its own PostgreSQL (pgserver: databases ``events`` and ``airflow``) and S3 server
(moto), creates ``--clients`` clients (10 buckets, one prefix each) with ``--events``
events each in one hour, then exports that hour with the DAG of ``dags/``:

- ``dagtest``: ``dag.test()`` in a fresh interpreter: every task runs in that one
  process, one after another (no scheduler, no executor): the cost of the work itself
  (plan + every client's export) without task start-ups;
- ``scheduler``: a real Airflow (scheduler with LocalExecutor ``--parallelism`` slots,
  dag-processor, API server; metadata in PostgreSQL). The exported hour is the last
  closed one and the DAG's start date is that hour, so once the DAG is unpaused the
  scheduler creates exactly that hour's run (no other run competes); it is timed from
  queued to finished, the tasks' own timings come from the REST API.
  With ``--per-client-clients N`` (0: skip) it also runs the PREVIOUS shape, one task
  per client (``events_export_max_groups`` = N), on N clients, as the baseline.

Each run is checked: every client's hour ``succeeded`` in ``export_runs`` and its
manifest present in the backup bucket. Prints a table and writes
``benchmarks/results/export_clients.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

#: The exported hour: the last closed hour, set in main(). The DAG's start date is this hour,
#: so the scheduler creates exactly one (catch-up) run, this hour's: no other run competes.
HOUR = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
BUCKETS = [f"bench-tenants-{i}" for i in range(10)]
BACKUP_BUCKET = "bench-backup"
LANDING_BUCKET = "bench-landing"
API_USER = "admin"


def client_ids(n: int) -> list[str]:
    """The benchmark's client ids.

    :param n: how many.
    """
    return [f"t{i:05d}" for i in range(n)]


def load_clients(dsn: str, clients: list[str], events: int) -> None:
    """Create the clients (a prefix each, spread over :data:`BUCKETS`) and their events of :data:`HOUR`.

    :param dsn: the events database.
    :param clients: client ids.
    :param events: events per client.
    """
    import random

    import psycopg

    from devtools.demo_data import STORED_COLUMNS, make_event, stored_columns

    rng = random.Random(7)
    cols = f"{STORED_COLUMNS}, created_at, client_id, batch_id"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events_log, export_runs, export_spaces, clients CASCADE")
        with conn.cursor().copy(
            "COPY clients (client_id, name, export_bucket, export_prefix) FROM STDIN"
        ) as copy:
            for i, cid in enumerate(clients):
                copy.write_row((cid, cid, BUCKETS[i % len(BUCKETS)], f"tenants/{cid}"))
        with conn.cursor().copy(f"COPY events_log ({cols}) FROM STDIN") as copy:
            for i, cid in enumerate(clients):
                for j in range(events):
                    when = HOUR + timedelta(seconds=(i * events + j) % 3600)
                    ev = make_event(rng, when)
                    copy.write_row((*stored_columns(ev), when, cid, "bench"))
        conn.execute("VACUUM ANALYZE events_log")


def s3_client(s3_endpoint: str) -> Any:
    """A boto3 client of the benchmark's S3 server.

    :param s3_endpoint: the S3 server.
    """
    import boto3

    from devtools import devstack

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=devstack.LOCAL_AWS_KEY,
        aws_secret_access_key=devstack.LOCAL_AWS_SECRET,
        region_name=devstack.LOCAL_REGION,
    )


def empty_buckets(s3_endpoint: str) -> None:
    """Delete every object of the benchmark's buckets (between runs).

    :param s3_endpoint: the S3 server.
    """
    s3 = s3_client(s3_endpoint)
    for bucket in [*BUCKETS, BACKUP_BUCKET]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def check_exported(dsn: str, s3_endpoint: str, clients: list[str]) -> dict[str, int]:
    """Count the clients whose hour succeeded and whose backup manifest exists.

    :param dsn: the events database.
    :param s3_endpoint: the S3 server.
    :param clients: the client ids expected.
    """
    import psycopg

    with psycopg.connect(dsn) as conn:
        ok = conn.execute(
            "SELECT count(*) FROM export_runs WHERE status = 'succeeded' AND interval_start = %s", (HOUR,)
        ).fetchone()[0]
    s3 = s3_client(s3_endpoint)
    manifests = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BACKUP_BUCKET):
        manifests += sum(1 for o in page.get("Contents", []) if o["Key"].endswith("_manifest.json"))
    return {"clients": len(clients), "succeeded": ok, "backup_manifests": manifests}


def base_env(events_uri: str, airflow_sql: str, s3_endpoint: str, home: Path, groups: int) -> dict[str, str]:
    """The environment of Airflow (either mode) for the benchmark's services.

    :param events_uri: ``AIRFLOW_CONN_EVENTS_DB``.
    :param airflow_sql: Airflow's metadata database (SQLAlchemy URI).
    :param s3_endpoint: the S3 server.
    :param home: ``AIRFLOW_HOME``.
    :param groups: ``events_export_max_groups``.
    """
    from devtools import devstack

    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_sql,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_EVENTS_DB": events_uri,
            "AIRFLOW_CONN_AWS_DEFAULT": devstack.aws_connection_json(s3_endpoint),
            "AIRFLOW_VAR_EVENTS_BACKUP_BUCKET": BACKUP_BUCKET,
            "AIRFLOW_VAR_EVENTS_LANDING_BUCKET": LANDING_BUCKET,
            "AIRFLOW_VAR_EVENTS_IP_HASH_SECRET": "bench-ip-hash-secret-of-at-least-32-bytes",
            "AIRFLOW_VAR_EVENTS_EXPORT_MAX_GROUPS": str(groups),
            "EVENTS_PIPELINE_START_DATE": HOUR.isoformat(),
            "AWS_ACCESS_KEY_ID": devstack.LOCAL_AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": devstack.LOCAL_AWS_SECRET,
            "AWS_DEFAULT_REGION": devstack.LOCAL_REGION,
            "PYTHONPATH": f"{REPO / 'plugins'}:{REPO}",
        }
    )
    return env


CHILD_DAGTEST = """
import json, sys, time
from datetime import datetime, timedelta
from airflow.utils import db
db.initdb()
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder={dags!r}).dags["events_export"]
for t in dag.tasks:
    t.retries = 0
t0 = time.perf_counter()
dr = dag.test(logical_date=datetime.fromisoformat({logical!r}))
seconds = time.perf_counter() - t0
tis = [
    {{"task_id": ti.task_id, "map_index": ti.map_index, "label": ti.rendered_map_index,
      "seconds": (ti.end_date - ti.start_date).total_seconds() if ti.end_date and ti.start_date else None}}
    for ti in dr.get_task_instances()
]
print(json.dumps({{"state": str(dr.state), "seconds": seconds, "tasks": tis}}))
"""


def run_dagtest(env: dict[str, str], home: Path) -> dict[str, Any]:
    """Run the hour with ``dag.test()`` in a fresh interpreter (SQLite metadata).

    :param env: the environment (its metadata URI is replaced by a SQLite file).
    :param home: ``AIRFLOW_HOME``.
    """
    env = {
        **env,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # dag.test() of Airflow 3.3.2 fails at the end of a run with a deadline alert
        "EVENTS_DEADLINE_ALERTS": "off",
    }
    code = CHILD_DAGTEST.format(dags=str(REPO / "dags"), logical=(HOUR + timedelta(hours=1)).isoformat())
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"dag.test child failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - t0
    return result


def start_airflow(env: dict[str, str], home: Path) -> list[subprocess.Popen[bytes]]:
    """``airflow db migrate``, then the scheduler, dag-processor and API server, logging to ``home``.

    :param env: the components' environment.
    :param home: ``AIRFLOW_HOME`` (logs go there).
    """
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    procs = []
    for name, args in {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", env["AIRFLOW__API__PORT"]],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
    }.items():
        with (home / f"{name}.log").open("ab") as out:
            procs.append(
                subprocess.Popen(
                    [airflow, *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
    return procs


def stop_airflow(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the components this benchmark started (their process groups), waiting for each.

    :param procs: the processes :func:`start_airflow` returned.
    """
    import signal

    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def run_scheduler(env: dict[str, str], home: Path, timeout: float) -> dict[str, Any]:
    """Run the hour through a real scheduler and API; return the run's and the tasks' timings.

    :param env: the components' environment.
    :param home: ``AIRFLOW_HOME``.
    :param timeout: seconds to wait for the run.
    """
    from devtools import devstack
    from devtools.celery_stack import AirflowApi

    port = devstack.free_port()
    env = {
        **env,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{API_USER}:admin",
    }
    procs = start_airflow(env, home)
    try:
        passwords = home / "simple_auth_manager_passwords.json.generated"
        deadline = time.monotonic() + 240
        api, last_error = None, None
        while True:
            try:
                if api is None and passwords.exists():
                    password = json.loads(passwords.read_text())[API_USER]
                    api = AirflowApi(f"http://127.0.0.1:{port}", API_USER, password)
                if api is not None and api.request("GET", "/dags/events_export", ok_missing=True):
                    break
            except Exception as exc:  # noqa: BLE001 - not up yet
                last_error = exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"events_export not ready after 240 s ({last_error}); see {home}/*.log")
            time.sleep(2)
        api.request("PATCH", "/dags/events_export", json={"is_paused": False})
        # the scheduler creates the hour's run itself (catch-up from the start date = HOUR)
        t0 = time.perf_counter()
        run_id = None
        while True:
            if run_id is None:
                runs = api.request("GET", "/dags/events_export/dagRuns?limit=10")["dag_runs"]
                mine = [r for r in runs if _ts(r.get("data_interval_start")) == HOUR]
                run_id = mine[0]["dag_run_id"] if mine else None
            run = api.request("GET", f"/dags/events_export/dagRuns/{run_id}") if run_id else {"state": None}
            if run["state"] in ("success", "failed"):
                break
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"run {run_id} not finished after {timeout} s")
            time.sleep(2)
        wall = time.perf_counter() - t0
        tis = api.task_instances("events_export", run_id)
        api.close()
    finally:
        stop_airflow(procs)
    queued, start, end = (_ts(run.get(k)) for k in ("queued_at", "start_date", "end_date"))
    tasks = [
        {
            "task_id": ti["task_id"],
            "map_index": ti["map_index"],
            "label": ti.get("rendered_map_index"),
            "state": ti["state"],
            "queued_wait": (_ts(ti["start_date"]) - _ts(ti["queued_when"])).total_seconds()
            if ti.get("queued_when") and ti.get("start_date")
            else None,
            "seconds": ti.get("duration"),
        }
        for ti in tis
    ]
    return {
        "state": run["state"],
        "seconds": (end - (queued or start)).total_seconds() if end and (queued or start) else wall,
        "polled_seconds": wall,
        "tasks": tasks,
    }


def summarize(name: str, result: dict[str, Any]) -> str:
    """One line per run: how long, how many tasks, where the time went.

    :param name: the run's label.
    :param result: what the run returned.
    """
    tasks = result["tasks"]
    groups = [t for t in tasks if t["task_id"] != "plan_export"]
    busy = sum(t["seconds"] or 0 for t in tasks)
    plan = next((t["seconds"] for t in tasks if t["task_id"] == "plan_export"), None)
    return (
        f"{name:<38} {result['state']:<8} {result['seconds']:>9.1f} s  {len(groups):>5} export tasks  "
        f"task time {busy:>8.1f} s  plan {plan or 0:>5.1f} s  longest group "
        f"{max((t['seconds'] or 0) for t in groups) if groups else 0:>6.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10, help="events per client in the hour")
    parser.add_argument("--mode", choices=["dagtest", "scheduler", "both"], default="both")
    parser.add_argument("--groups", type=int, default=8, help="events_export_max_groups")
    parser.add_argument(
        "--parallelism", type=int, default=4, help="scheduler mode: AIRFLOW__CORE__PARALLELISM"
    )
    parser.add_argument(
        "--per-client-clients",
        type=int,
        default=0,
        help="scheduler mode: also run one task per client on this many clients (the previous shape)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for a scheduler run")
    args = parser.parse_args()

    import psycopg

    from devtools import devstack
    from events_pipeline.common.migrations import apply_migrations
    from events_pipeline.common.partitions import ensure_daily_partitions

    work = Path(tempfile.mkdtemp(prefix="bench-export-clients-"))
    pg = devstack.start_postgres(work / "pg" / "data")
    s3 = devstack.start_s3()
    results: dict[str, Any] = {}
    lines = []
    try:
        pg.create_database("events")
        pg.create_database("airflow")
        dsn = pg.dsn("events")
        with psycopg.connect(dsn) as conn:
            apply_migrations(conn)
            ensure_daily_partitions(conn, HOUR.date(), HOUR.date())
        devstack.create_buckets(s3.endpoint_url, [*BUCKETS, BACKUP_BUCKET, LANDING_BUCKET])
        os.environ["AIRFLOW__CORE__PARALLELISM"] = str(args.parallelism)

        def one(name: str, mode: str, clients: list[str], groups: int) -> None:
            load_clients(dsn, clients, args.events)
            empty_buckets(s3.endpoint_url)
            home = work / name.replace(" ", "_")
            home.mkdir(parents=True)
            env = base_env(
                pg.airflow_uri("events"), pg.sqlalchemy_uri("airflow"), s3.endpoint_url, home, groups
            )
            if mode == "scheduler":
                with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
                    conn.execute("DROP DATABASE IF EXISTS airflow WITH (FORCE)")
                    conn.execute("CREATE DATABASE airflow")
                result = run_scheduler(env, home, args.timeout)
            else:
                result = run_dagtest(env, home)
            result["check"] = check_exported(dsn, s3.endpoint_url, clients)
            result.update(clients=len(clients), events_per_client=args.events, groups_setting=groups)
            results[name] = result
            lines.append(summarize(name, result) + f"  check {result['check']}")
            print(lines[-1], flush=True)

        clients = client_ids(args.clients)
        if args.mode in ("dagtest", "both"):
            one(f"dag.test {args.clients} clients, {args.groups} groups", "dagtest", clients, args.groups)
        if args.mode in ("scheduler", "both"):
            one(f"scheduler {args.clients} clients, {args.groups} groups", "scheduler", clients, args.groups)
            if args.per_client_clients:
                n = args.per_client_clients
                one(f"scheduler {n} clients, 1 task/client", "scheduler", client_ids(n), n)
        summary = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
            "parallelism": args.parallelism,
            "runs": results,
        }
        print()
        print("\n".join(lines))
        out = REPO / "benchmarks" / "results" / "export_clients.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"\nwrote {out.relative_to(REPO)}")
    finally:
        s3.stop()
        pg.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
