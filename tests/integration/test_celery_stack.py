"""The project on Airflow's CeleryExecutor: two workers share ingest and export, exactly once.

Opt-in: ``pytest -m celery`` (the default run deselects it; ``make test`` runs it
after the default suite). It starts what ``make run EXECUTOR=celery`` starts
(``scripts/run_celery.py``, in a throw-away ``EVENTS_HOME`` on free ports): the
embedded PostgreSQL (Airflow metadata + events), the S3 server with the demo
clients and landing files, a Redis broker, and Airflow's API server, scheduler,
dag-processor, triggerer and two ``airflow celery worker`` processes
(``worker-1``, ``worker-2``, 2 slots each). DAGs start paused and the scheduler
creates no scheduled runs (``[scheduler] use_job_schedule = False``): the test
adds a batch of demo landing files (one mapped ``load_batch`` per file),
unpauses ``events_ingest`` and ``events_export`` and triggers one run of each
through the REST API.

It then checks, from the task instances of ``/api/v2/dags/{dag}/dagRuns/{run}/taskInstances``
and the workers' own logs, that the mapped tasks of both runs ran on both
workers, and that nothing was lost or doubled: ``events_log`` holds every
landing line but the rejected ones, no ``event_id`` twice, and each client's
hour manifest (client and backup bucket) counts exactly the rows the database
marked exported for that hour, the Parquet parts holding exactly those events.

It skips, saying why, when no ``redis-server`` can be found or installed
(Debian's package through apt-get, as root). Every wait is bounded, and every
process the stack started is stopped (and checked gone) at the end; on failure
the run's folder, with every process's log, is kept and named.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from devtools import celery_stack, devstack
from devtools.celery_stack import AirflowApi, BrokerUnavailableError

pytestmark = [pytest.mark.celery, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
WORKERS = ("worker-1", "worker-2")
#: The test's own landing files (on top of run_celery.py's demo files): count, events each.
BATCH_FILES, BATCH_EVENTS = 6, 500
#: Seconds for the stack to answer (PostgreSQL, S3, Redis, migrations, five Airflow processes).
START_TIMEOUT = 480.0
#: Seconds for one DAG run to finish; for the DAGs to be parsed.
RUN_TIMEOUT = 300.0
#: Seconds for run_celery.py to stop everything after SIGINT.
STOP_TIMEOUT = 120.0


@dataclass
class CeleryStack:
    """The running stack as ``ready.json`` describes it, with a logged-in API client.

    :param home: the run's ``EVENTS_HOME`` (process logs in ``logs/``).
    :param info: the content of ``ready.json``.
    :param api: REST API client.
    :param runner: the ``run_celery.py`` process.
    :param keep: keep ``home`` after the test (set False by a passing test).
    :param summary: lines printed at the end (workers, tasks, timings).
    """

    home: Path
    info: dict[str, Any]
    api: AirflowApi
    runner: subprocess.Popen[bytes] = field(repr=False)
    keep: bool = True
    summary: list[str] = field(default_factory=list)

    def log_of(self, name: str) -> Path:
        """Log file of process ``name`` (``worker-1``, ``scheduler``...)."""
        return Path(self.info["processes"][name]["log"])


@pytest.fixture(scope="module")
def stack() -> Iterator[CeleryStack]:
    """``scripts/run_celery.py`` in a throw-away home; stopped (and checked stopped) afterwards."""
    home = Path(tempfile.mkdtemp(prefix="events-celery-"))
    try:
        broker_binary = celery_stack.ensure_redis_server(home / "install-redis.log")
    except BrokerUnavailableError as exc:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"no Redis broker for the CeleryExecutor stack: {exc}")
    runner_log = home / "run_celery.log"
    with runner_log.open("ab") as out:
        runner = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "run_celery.py")],
            env=_runner_env(home, broker_binary),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,
        )
    info: dict[str, Any] = {}
    handle = None
    try:
        info = _wait_ready(home / "celery" / "ready.json", runner, runner_log)
        password = json.loads(Path(info["password_file"]).read_text())[info["username"]]
        handle = CeleryStack(
            home=home, info=info, api=AirflowApi(info["api_url"], info["username"], password), runner=runner
        )
        yield handle
    finally:
        if handle is not None:
            handle.api.close()
        leftovers = _stop(runner, info, home)
        keep = handle is None or handle.keep or bool(leftovers)
        if handle is not None:
            print("\n".join(handle.summary))
        if keep:
            print(f"celery stack: run folder kept: {home} (process logs in {home / 'logs'})")
        else:
            shutil.rmtree(home, ignore_errors=True)
        assert not leftovers, f"processes of the celery stack still running after stop: {leftovers}"


def _runner_env(home: Path, broker_binary: str) -> dict[str, str]:
    """run_celery.py's environment: the test run's own settings (conftest's SQLite Airflow...) removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "EVENTS_", "AWS_"))}
    env.update(
        {
            "EVENTS_HOME": str(home),
            "EVENTS_REDIS_SERVER": broker_binary,
            "AIRFLOW__API__PORT": str(devstack.free_port()),
            "EVENTS_S3_PORT": str(devstack.free_port()),
            "EVENTS_CELERY_WORKERS": str(len(WORKERS)),
            "EVENTS_CELERY_CONCURRENCY": "2",
            "EVENTS_CELERY_START_TIMEOUT": str(START_TIMEOUT / 2),
            # One landing file per mapped load_batch task: the batch spreads over both workers.
            "AIRFLOW_VAR_EVENTS_INGEST_FILES_PER_TASK": "1",
            # Only the runs this test triggers: paused DAGs, no scheduled (or asset) runs.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        }
    )
    return env


def _wait_ready(ready_file: Path, runner: subprocess.Popen[bytes], runner_log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if ready_file.exists():
            return json.loads(ready_file.read_text())
        if runner.poll() is not None:
            pytest.fail(
                f"scripts/run_celery.py exited with code {runner.returncode} before the stack was ready; "
                f"see {runner_log} and the logs next to it:\n{_tail(runner_log)}"
            )
        time.sleep(1)
    pytest.fail(
        f"the celery stack was not ready within {START_TIMEOUT:.0f} s; see {runner_log}:\n{_tail(runner_log)}"
    )


def _stop(runner: subprocess.Popen[bytes], info: dict[str, Any], home: Path) -> list[str]:
    """SIGINT run_celery.py (it stops what it started); kill and report anything left over."""
    if runner.poll() is None:
        os.kill(runner.pid, signal.SIGINT)
        try:
            runner.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(timeout=10)
    leftovers = []
    for name, proc in info.get("processes", {}).items():
        if celery_stack.group_alive(proc["pid"]):
            leftovers.append(f"{name} (process group {proc['pid']}, log {proc['log']})")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc["pid"], signal.SIGKILL)
    # Anything else started for this run (PostgreSQL, a component of a killed runner...):
    # its command line names the run's folder, or its environment has this EVENTS_HOME.
    for pid, cmdline in _processes_of_run(home):
        leftovers.append(f"pid {pid}: {cmdline[:120]}")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return leftovers


def _processes_of_run(home: Path) -> list[tuple[int, str]]:
    """Processes whose command line mentions ``home`` or whose environment has ``EVENTS_HOME=home``."""
    marker = f"EVENTS_HOME={home}\0".encode()
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(home) in cmdline or marker in (proc_dir / "environ").read_bytes():
                found.append((int(proc_dir.name), cmdline))
    return found


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --------------------------------------------------------------------------- REST helpers


def _wait_dags(api: AirflowApi, dag_ids: tuple[str, ...]) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    missing = list(dag_ids)
    while missing and time.monotonic() < deadline:
        missing = [d for d in missing if api.request("GET", f"/dags/{d}", ok_missing=True) is None]
        time.sleep(1 if missing else 0)
    assert not missing, f"DAGs {missing} not parsed within {RUN_TIMEOUT:.0f} s (see dag-processor.log)"


def _run_dag(
    stack: CeleryStack, dag_id: str, body: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Trigger a run and wait (bounded) until it ends; return the run and its task instances.

    Fails at once when a task instance fails or waits for a retry (nothing
    here should retry; a retry delay is minutes), naming its log file.
    """
    api = stack.api
    run = api.request("POST", f"/dags/{dag_id}/dagRuns", json=body)
    path = f"/dags/{dag_id}/dagRuns/{quote(run['dag_run_id'], safe='')}"
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        tis = api.task_instances(dag_id, run["dag_run_id"])
        broken = [ti for ti in tis if ti["state"] in ("failed", "up_for_retry", "upstream_failed")]
        if run["state"] in ("success", "failed") or broken or time.monotonic() > deadline:
            break
        time.sleep(2)
        run = api.request("GET", path)
    states = {_label(ti): f"{ti['state']} on {ti['hostname']}" for ti in tis}
    assert run["state"] == "success" and not broken, (
        f"{dag_id} run {run['dag_run_id']} is {run['state']} (at most {RUN_TIMEOUT:.0f} s): {states}; "
        f"failed task logs: {[str(_task_log(stack, ti)) for ti in broken]}; "
        f"process logs in {stack.info['log_dir']}"
    )
    return run, tis


def _task_log(stack: CeleryStack, ti: dict[str, Any]) -> Path:
    """The task instance's log file (Airflow's default layout under ``$AIRFLOW_HOME/logs``)."""
    return (
        Path(stack.info["airflow_home"])
        / "logs"
        / f"dag_id={ti['dag_id']}"
        / f"run_id={ti['dag_run_id']}"
        / f"task_id={ti['task_id']}"
        / (f"map_index={ti['map_index']}" if ti["map_index"] >= 0 else "")
        / f"attempt={ti['try_number']}.log"
    )


def _label(ti: dict[str, Any]) -> str:
    if ti["map_index"] < 0:
        return ti["task_id"]
    return f"{ti['task_id']}[{ti['rendered_map_index'] or ti['map_index']}]"


def _seconds(run: dict[str, Any]) -> float:
    start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


# --------------------------------------------------------------------------- the scenario


def test_two_celery_workers_share_ingest_and_export_exactly_once(stack: CeleryStack) -> None:
    import boto3
    import psycopg

    info = stack.info
    s3 = boto3.client(
        "s3",
        endpoint_url=info["s3_endpoint"],
        aws_access_key_id=devstack.LOCAL_AWS_KEY,
        aws_secret_access_key=devstack.LOCAL_AWS_SECRET,
        region_name=devstack.LOCAL_REGION,
    )
    _add_batch(s3, info["landing_bucket"])
    landing = _landing_lines(s3, info["landing_bucket"])
    assert len(landing) >= BATCH_FILES, f"landing files: {landing}"
    _wait_dags(stack.api, ("events_ingest", "events_export"))
    for dag_id in ("events_ingest", "events_export"):
        stack.api.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    with psycopg.connect(info["events_dsn"], autocommit=True) as db:
        # run_celery.py may have loaded demo history files (first start) before Airflow started
        before = db.execute("SELECT count(*) FROM events_log").fetchone()[0]
        ingest, ingest_tis = _run_dag(stack, "events_ingest", {"logical_date": datetime.now(UTC).isoformat()})
        rejected = _check_ingest_exactly_once(db, s3, info["landing_bucket"], landing, before)
        hour = db.execute("SELECT date_trunc('hour', max(created_at)) FROM events_log").fetchone()[0]
        hour = hour.astimezone(UTC)
        export_body = {
            "logical_date": hour.isoformat(),
            "data_interval_start": hour.isoformat(),
            "data_interval_end": (hour + timedelta(hours=1)).isoformat(),
        }
        export, export_tis = _run_dag(stack, "events_export", export_body)
        exported = _check_export_exactly_once(db, s3, info["backup_bucket"], hour)

    # The mapped tasks (load_batch per file; the export's per-client task or client groups).
    loads = [ti for ti in ingest_tis if ti["map_index"] >= 0]
    exports = [ti for ti in export_tis if ti["map_index"] >= 0]
    assert len(loads) >= BATCH_FILES, f"events_ingest mapped {len(loads)} task(s) for {len(landing)} files"
    assert len(exports) >= 2, f"events_export mapped {len(exports)} task(s) for {len(exported)} clients"
    _check_workers(stack, ingest_tis + export_tis, {"events_ingest": loads, "events_export": exports})

    per_worker = Counter((ti["hostname"], ti["dag_id"]) for ti in ingest_tis + export_tis)
    stack.summary += [
        f"celery stack: {info['executor']}, broker {info['broker_url']}, workers {info['workers']} "
        f"(concurrency {info['concurrency']} each); ready after {info['ready_after_seconds']} s",
        f"landing: {len(landing)} files, {sum(landing.values())} lines, {rejected} rejected; "
        f"events_ingest run {_seconds(ingest):.1f} s, events_export run {_seconds(export):.1f} s "
        f"(hour {hour:%Y-%m-%d %H}:00, rows per client {exported})",
        *(f"  {host}: {dag} x{n}" for (host, dag), n in sorted(per_worker.items())),
        *(
            f"  {ti['hostname']:9} pid {ti['pid']:>6} {ti['duration']:6.1f} s  {ti['dag_id']} {_label(ti)}"
            for ti in sorted(ingest_tis + export_tis, key=lambda t: (t["hostname"], t["start_date"]))
        ),
    ]
    stack.keep = False


def _add_batch(s3: Any, bucket: str) -> None:
    """Upload :data:`BATCH_FILES` gzip NDJSON demo files of this hour under ``incoming/celery-test/``."""
    from devtools.demo_data import iter_events, ndjson_bytes

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for i in range(BATCH_FILES):
        body = ndjson_bytes(list(iter_events(BATCH_EVENTS, start=hour, seed=9_000 + i)))
        s3.put_object(
            Bucket=bucket, Key=f"incoming/celery-test/{hour:%Y/%m/%d/%H}/batch-{i:02d}.ndjson.gz", Body=body
        )


def _landing_lines(s3: Any, bucket: str) -> dict[str, int]:
    """Lines of every object under ``incoming/`` (gzip-decompressed when named ``*.gz``)."""
    lines = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="incoming/"):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            if obj["Key"].endswith(".gz"):
                body = gzip.decompress(body)
            lines[obj["Key"]] = sum(1 for line in body.splitlines() if line.strip())
    return lines


def _check_ingest_exactly_once(db: Any, s3: Any, bucket: str, landing: dict[str, int], before: int) -> int:
    """Every landing line is in events_log once, or in a rejected file; return the rejected count.

    :param before: rows of events_log before the run (demo history loaded at start-up).
    """
    files = db.execute(
        "SELECT key, status, rows_loaded, rows_rejected, rejected_key FROM landing_files "
        "WHERE bucket = %s AND key = ANY(%s)",
        (bucket, list(landing)),
    ).fetchall()
    assert sorted(f[0] for f in files) == sorted(landing), "landing_files registers each landing file once"
    assert {f[1] for f in files} == {"processed"}, f"landing files not all processed: {files}"
    rejected = sum(f[3] or 0 for f in files)
    rejected_lines = 0
    for key in (f[4] for f in files if f[4]):
        rejected_lines += len(s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines())
    assert rejected_lines == rejected > 0, "the demo's bad lines are in rejected/ files, counted once"
    total, distinct = db.execute("SELECT count(*), count(DISTINCT event_id) FROM events_log").fetchone()
    assert total - before == sum(landing.values()) - rejected, (
        "new events_log rows = landing lines - rejected"
    )
    assert total - before == sum(f[2] for f in files), "new events_log rows = rows_loaded of the files"
    assert distinct == total, f"{total - distinct} duplicate event_id(s) in events_log"
    left = s3.list_objects_v2(Bucket=bucket, Prefix="incoming/").get("KeyCount", 0)
    assert left == 0, f"{left} object(s) still under incoming/"
    return rejected


def _check_export_exactly_once(db: Any, s3: Any, backup_bucket: str, hour: datetime) -> dict[str, int]:
    """Each active client's hour manifests (client + backup) = the rows the DB exported; return them."""
    import pyarrow.parquet as pq

    pending = db.execute(
        "SELECT count(*) FROM events_log WHERE client_id IS NOT NULL AND export_status <> 'exported'"
    ).fetchone()[0]
    assert pending == 0, f"{pending} attributed row(s) not exported by the run covering every load"
    clients = db.execute(
        "SELECT client_id, export_bucket, export_prefix FROM clients WHERE active ORDER BY client_id"
    ).fetchall()
    exported = {}
    folder = f"dt={hour:%Y-%m-%d}/hour={hour:%H}"
    for client_id, bucket, prefix in clients:
        db_ids = {
            str(r[0])
            for r in db.execute(
                "SELECT event_id FROM events_log WHERE client_id = %s AND export_hour = %s "
                "AND export_status = 'exported'",
                (client_id, hour),
            )
        }
        run = db.execute(
            "SELECT status, row_count FROM export_runs WHERE client_id = %s AND interval_start = %s",
            (client_id, hour),
        ).fetchone()
        assert run == ("succeeded", len(db_ids)), f"export_runs of {client_id}: {run}, DB rows {len(db_ids)}"
        for where, key_prefix in (
            (bucket, f"{prefix.strip('/')}/{folder}"),
            (backup_bucket, f"{client_id}/{folder}"),
        ):
            manifest = json.loads(
                s3.get_object(Bucket=where, Key=f"{key_prefix}/_manifest.json")["Body"].read()
            )
            assert manifest["row_count"] == len(db_ids) == sum(f["rows"] for f in manifest["files"]), (
                f"s3://{where}/{key_prefix}/_manifest.json: {manifest['row_count']} rows, DB: {len(db_ids)}"
            )
            ids: list[str] = []
            for part in manifest["files"]:
                if part["key"].endswith(".parquet"):
                    body = s3.get_object(Bucket=where, Key=f"{key_prefix}/{part['key']}")["Body"].read()
                    ids += (
                        pq.read_table(io.BytesIO(body), columns=["event_id"]).column("event_id").to_pylist()
                    )
            if ids or not manifest["files"]:
                assert len(ids) == len(set(ids)) and set(ids) == db_ids, (
                    f"Parquet events of {client_id} != DB"
                )
        exported[client_id] = len(db_ids)
    assert sum(exported.values()) > 0, "the demo hour exported no rows at all"
    return exported


def _check_workers(
    stack: CeleryStack, tis: list[dict[str, Any]], mapped: dict[str, list[dict[str, Any]]]
) -> None:
    """Each TI ran on a named worker whose own log shows it; each DAG's mapped tasks used both workers."""
    by_worker: dict[str, set[str]] = defaultdict(set)
    for name in WORKERS:
        by_worker[name] = set(celery_stack.workloads_in_log(stack.log_of(name)))
    for ti in tis:
        assert ti["hostname"] in WORKERS, f"{ti['dag_id']} {_label(ti)} ran on {ti['hostname']!r}"
        assert ti["pid"], f"{ti['dag_id']} {_label(ti)} has no pid"
        others = [w for w in WORKERS if w != ti["hostname"] and ti["id"] in by_worker[w]]
        assert ti["id"] in by_worker[ti["hostname"]] and not others, (
            f"{ti['dag_id']} {_label(ti)} (id {ti['id']}) reports {ti['hostname']}, but the workers' logs "
            f"show it on {[w for w in WORKERS if ti['id'] in by_worker[w]]} ({stack.info['log_dir']})"
        )
    for dag_id, group in mapped.items():
        used = Counter(ti["hostname"] for ti in group)
        assert set(used) == set(WORKERS), f"{dag_id}'s mapped tasks ran on {dict(used)}, not on both workers"
