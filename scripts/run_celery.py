"""Run the pipeline locally on Airflow's CeleryExecutor: ``make run EXECUTOR=celery``.

The same services, demo data and Airflow components as ``make run``
(``scripts/run_local.py``, whose functions this reuses: ports check, embedded
PostgreSQL, S3 server, demo pixel service, Airflow environment, demo data,
``airflow db migrate``, API server / scheduler / dag-processor / triggerer,
health wait, supervision and stop), with the CeleryExecutor instead of the
LocalExecutor:

- a private Redis broker on 127.0.0.1 (``EVENTS_REDIS_PORT``, a free port by
  default): ``redis-server`` or ``valkey-server`` from ``PATH``; when missing and
  this runs as root, Debian's ``redis-server`` package is installed with apt-get
  (``EVENTS_REDIS_INSTALL=0`` turns that off, ``EVENTS_REDIS_SERVER`` names a binary);
- the Celery result backend in Airflow's PostgreSQL metadata database;
- ``EVENTS_CELERY_WORKERS`` (2) ``airflow celery worker`` processes named
  ``worker-1``, ``worker-2``... (``--celery-hostname``; the task instances each
  one runs carry that name as their hostname), ``EVENTS_CELERY_CONCURRENCY`` (2)
  task slots each; ``[core] parallelism`` is their total.

Process logs: ``$EVENTS_HOME/logs/`` (``.local/logs``): ``airflow-<component>.log``,
``airflow-worker-N.log``, ``redis.log``; a failure names the process and its
log. Once every component is healthy and every worker answers a Celery ping,
``$EVENTS_HOME/celery/ready.json`` describes the stack (the celery test reads
it). Ctrl-C (or SIGTERM) stops everything this started.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_local  # the LocalExecutor runner: its functions build the same stack
from devtools import celery_stack, pixel_management_server
from devtools.celery_stack import BrokerUnavailableError, RedisInstance
from devtools.devstack import FolderAccessError, PortInUseError

log = logging.getLogger("run_celery")

RUN_DIR = run_local.LOCAL / "celery"
LOG_DIR = run_local.LOG_DIR
READY_FILE = RUN_DIR / "ready.json"
WORKERS = int(os.environ.get("EVENTS_CELERY_WORKERS", "2"))
CONCURRENCY = int(os.environ.get("EVENTS_CELERY_CONCURRENCY", "2"))
REDIS_PORT = int(os.environ.get("EVENTS_REDIS_PORT", "0"))
INSTALL_REDIS = os.environ.get("EVENTS_REDIS_INSTALL", "1") != "0"
#: Seconds the workers get to answer a Celery ping once Airflow is healthy.
WORKER_TIMEOUT = float(os.environ.get("EVENTS_CELERY_START_TIMEOUT", "120"))


def main() -> int:
    """Start the stack, block until Ctrl-C/SIGTERM or a process dies; return the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s run_celery %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    run_local.LOCAL.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    READY_FILE.unlink(missing_ok=True)
    # Until Airflow runs, SIGTERM stops like Ctrl-C (the finally below cleans up).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack: list[Any] = []  # things with .stop(): PostgreSQL, S3, demo service, Redis
    try:
        run_local._check_ports()
        binary = celery_stack.ensure_redis_server(LOG_DIR / "install-redis.log", install=INSTALL_REDIS)
        events_dsn, airflow_sql_conn, events_conn_uri = run_local._databases(stack)
        s3_endpoint = run_local._s3(stack)
        pixel_conn = run_local._pixel_management(stack)
        env = run_local._airflow_env(events_conn_uri, airflow_sql_conn, s3_endpoint)
        if pixel_conn:
            env["AIRFLOW_CONN_PIXEL_MANAGEMENT"] = pixel_conn
        redis = celery_stack.start_redis(binary, RUN_DIR / "redis", LOG_DIR, port=REDIS_PORT)
        stack.append(redis)
        env.update(_celery_settings(env, redis.url))
        os.environ.update(env)
        service_only = pixel_management_server.SERVICE_ONLY_DOMAINS if pixel_conn else ()
        run_local._prepare_data(events_dsn, s3_endpoint, service_only)
        return _run_airflow(env, redis, {"events_dsn": events_dsn, "s3_endpoint": s3_endpoint})
    except KeyboardInterrupt:
        log.info("stopping (signal)")
        return 0
    except (
        BrokerUnavailableError,
        celery_stack.StackError,
        run_local.StackError,
        PortInUseError,
        FolderAccessError,
    ) as exc:
        log.error("%s", exc)
        log.error("process logs: %s", LOG_DIR)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        READY_FILE.unlink(missing_ok=True)
        for thing in reversed(stack):
            try:
                thing.stop()
            except Exception as exc:  # noqa: BLE001 - best effort on shutdown
                log.warning("stopping %s: %s", thing, exc)
        log.info("stopped")


def worker_names() -> list[str]:
    """Names of the workers (``worker-1``...): ``--celery-hostname`` and the hostname of their tasks."""
    return [f"worker-{i}" for i in range(1, WORKERS + 1)]


def _celery_settings(env: dict[str, str], broker_url: str) -> dict[str, str]:
    """The CeleryExecutor settings; anything the user exported wins, except the executor itself."""
    settings = celery_stack.celery_env(
        broker_url=broker_url,
        sql_alchemy_conn=env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        api_host=run_local.API_HOST,
        api_port=run_local.API_PORT,
        workers=WORKERS,
        concurrency=CONCURRENCY,
        repo=run_local.REPO,
    )
    # Two landing files per mapped load_batch task (default 8): a demo batch spreads over the workers.
    settings["AIRFLOW_VAR_EVENTS_INGEST_FILES_PER_TASK"] = "2"
    merged = {k: os.environ.get(k, v) for k, v in settings.items()}
    merged["PYTHONPATH"] = settings["PYTHONPATH"]
    merged["AIRFLOW__CORE__EXECUTOR"] = "CeleryExecutor"
    return merged


def _run_airflow(env: dict[str, str], redis: RedisInstance, extra: dict[str, str]) -> int:
    """Migrate, start run_local's components and the workers, wait until all answer, run until a signal.

    :param env: the Airflow environment (LocalExecutor's, plus :func:`_celery_settings`).
    :param redis: the broker.
    :param extra: more facts for ``ready.json`` (events DSN, S3 endpoint).
    :return: 0 after Ctrl-C / SIGTERM, 1 when a process stopped by itself.
    """
    run_env = {**os.environ, **env}
    # components start `airflow` by name (a worker's task processes too)
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env.get('PATH', '')}"
    stop = {"asked": False}

    def _stop(signum: int, _frame: object) -> None:
        if not stop["asked"]:
            log.info("stopping airflow and the workers (signal %d), this takes ~10-30 s...", signum)
        stop["asked"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    started = time.monotonic()
    run_local._migrate_airflow(run_env)
    if stop["asked"]:
        return 0
    url = f"http://{run_local.API_HOST}:{run_local.API_PORT}"
    procs = run_local._start_airflow(run_env, url, stop)
    try:
        procs.update(_start_workers(run_env))
        if run_local._wait_ready(url, procs, stop) and _wait_workers(redis.url, procs, stop):
            elapsed = time.monotonic() - started
            _write_ready(url, env, redis, procs, extra, elapsed)
            log.info("CeleryExecutor stack ready %.0f s after airflow db migrate began", elapsed)
            run_local._print_banner(url, env)
            _print_celery_banner(redis.url, procs)
        return run_local._supervise(procs, stop)
    finally:
        run_local._stop_airflow(procs)
        _report_leftovers(procs)


def _start_workers(env: dict[str, str]) -> dict[str, subprocess.Popen[bytes]]:
    """Start the Celery workers, each in its own process group, output in ``airflow-worker-N.log``.

    They skip Airflow's log server (it would bind every interface on one fixed
    port); their task logs are files under ``$AIRFLOW_HOME/logs``, which the API
    server reads directly on this machine.
    """
    procs = {}
    for name in worker_names():
        argv = [
            run_local._airflow_bin(), "celery", "worker",
            "--celery-hostname", name,
            "--concurrency", str(CONCURRENCY),
            "--skip-serve-logs",
        ]  # fmt: skip
        worker_env = celery_stack.worker_env(env, name)
        managed = celery_stack.start_process(name, argv, worker_env, run_local._component_log(name))
        procs[name] = managed.process
    return procs


def _wait_workers(broker_url: str, procs: dict[str, subprocess.Popen[bytes]], stop: dict[str, bool]) -> bool:
    """Wait until every worker answers a Celery ping (``celery@worker-N``) on the broker.

    :return: True when all answer, False when stopped first.
    :raises run_local.StackError: a process exited, or a worker did not answer within
        ``EVENTS_CELERY_START_TIMEOUT`` seconds (names it and its log).
    """
    nodes = {f"celery@{name}": name for name in worker_names()}
    answered: set[str] = set()
    deadline = time.monotonic() + WORKER_TIMEOUT
    while not stop["asked"]:
        problem = run_local._dead(procs)
        if problem:
            raise run_local.StackError(problem)
        answered |= celery_stack.celery_ping(broker_url, sorted(set(nodes) - answered))
        if answered >= set(nodes):
            log.info("workers answering on %s: %s", broker_url, ", ".join(sorted(answered)))
            return True
        if time.monotonic() > deadline:
            name = nodes[min(set(nodes) - answered)]
            raise run_local.StackError(
                f"Celery worker {name} (pid {procs[name].pid}) did not answer a ping on {broker_url} "
                f"within {WORKER_TIMEOUT:.0f} s (EVENTS_CELERY_START_TIMEOUT); see "
                f"{run_local._component_log(name)}"
            )
        time.sleep(1)
    return False


def _write_ready(
    url: str,
    env: dict[str, str],
    redis: RedisInstance,
    procs: dict[str, subprocess.Popen[bytes]],
    extra: dict[str, str],
    elapsed: float,
) -> None:
    """Describe the running stack in ``ready.json`` (written atomically)."""
    users = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    processes = {"redis": {"pid": redis.managed.pid, "log": str(redis.managed.log_path)}}
    processes |= {
        name: {"pid": p.pid, "log": str(run_local._component_log(name))} for name, p in procs.items()
    }
    info = {
        "api_url": url,
        "username": users.split(",")[0].split(":")[0],
        "password_file": str(Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"),
        "airflow_home": env["AIRFLOW_HOME"],
        "landing_bucket": run_local.LANDING,
        "backup_bucket": run_local.BACKUP,
        "broker_url": redis.url,
        "executor": env["AIRFLOW__CORE__EXECUTOR"],
        "parallelism": env["AIRFLOW__CORE__PARALLELISM"],
        "workers": worker_names(),
        "concurrency": CONCURRENCY,
        "log_dir": str(LOG_DIR),
        "processes": processes,
        "runner_pid": os.getpid(),
        "ready_after_seconds": round(elapsed, 1),
        **extra,
    }
    tmp = READY_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(READY_FILE)


def _print_celery_banner(broker_url: str, procs: dict[str, subprocess.Popen[bytes]]) -> None:
    lines = [f"  executor: CeleryExecutor, broker {broker_url}, result backend: Airflow's database"]
    lines += [f"  {name}: pid {p.pid}, log {run_local._component_log(name)}" for name, p in procs.items()]
    print("\n".join(lines) + "\n", flush=True)


def _report_leftovers(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for name, proc in procs.items():
        if proc.poll() is None or celery_stack.group_alive(proc.pid):
            log.warning(
                "%s (pid %d) still running after stop; see %s", name, proc.pid, run_local._component_log(name)
            )


if __name__ == "__main__":
    sys.exit(main())
