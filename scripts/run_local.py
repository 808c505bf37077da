"""Run the pipeline locally: PostgreSQL, an S3 server, demo data and Airflow.

This is what ``make run`` calls. It starts (each skipped when you point it at a
real service through the environment):

- an embedded PostgreSQL (pgserver) with data kept in ``.local/pg/data``
  (databases ``events`` and ``airflow``; unix socket only), unless ``EVENTS_DB_URI``
  and ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` are set;
- moto's S3 server on 127.0.0.1:``EVENTS_S3_PORT`` (9000), unless
  ``EVENTS_S3_ENDPOINT`` is set (MinIO, real S3 through ``AWS_*`` credentials);
- a demo pixel management service on 127.0.0.1:``EVENTS_PIXEL_PORT`` (a free
  port by default) for ``AIRFLOW_CONN_PIXEL_MANAGEMENT``, unless that is set;
  the demo then leaves ``initech.io`` out of ``client_domains`` so the sync maps it;

then creates the buckets, applies migrations, seeds the demo clients and drops
demo landing files (on a first start, also two files of the hours before, loaded
and dated back so that the first export runs deliver Parquet: see
``devtools/demo_history.py``), and starts Airflow's components (API server/UI,
scheduler with LocalExecutor, dag-processor, triggerer; what ``airflow standalone``
runs, but without the log servers that would listen on every interface) with
every DAG unpaused. Everything listens on 127.0.0.1. A busy port stops it within
seconds naming the port and its variable; Airflow not healthy after
``EVENTS_AIRFLOW_START_TIMEOUT`` seconds (90) is reported with its log files.
Ctrl-C stops everything it started.

The steps are separate functions (services: :func:`_databases`, :func:`_s3`,
:func:`_pixel_management`; data: :func:`_prepare_data`; Airflow: :func:`_airflow_env`,
:func:`_run_airflow`) so another runner (``scripts/run_celery.py``) reuses them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from devtools import demo_data, devstack, pixel_management_server  # noqa: E402
from devtools.devstack import FolderAccessError, PortInUseError  # noqa: E402

log = logging.getLogger("run_local")

LOCAL = Path(os.environ.get("EVENTS_HOME", REPO / ".local")).resolve()
LANDING = os.environ.get("AIRFLOW_VAR_EVENTS_LANDING_BUCKET", "events-landing")
BACKUP = os.environ.get("AIRFLOW_VAR_EVENTS_BACKUP_BUCKET", "events-backup")
API_HOST = os.environ.get("AIRFLOW__API__HOST", "127.0.0.1")
API_PORT = int(os.environ.get("AIRFLOW__API__PORT", "8080"))
S3_PORT = int(os.environ.get("EVENTS_S3_PORT", "9000"))
PIXEL_PORT = int(os.environ.get("EVENTS_PIXEL_PORT", "0"))
#: The S3 endpoint is the local moto server (the only one that gets placeholder credentials).
S3_LOCAL = not os.environ.get("EVENTS_S3_ENDPOINT")
#: Seconds after which a not yet healthy Airflow is reported (with its log files).
START_TIMEOUT = float(os.environ.get("EVENTS_AIRFLOW_START_TIMEOUT", "90"))
#: Output of Airflow's components (one file each) and of ``airflow db migrate``.
LOG_DIR = LOCAL / "logs"
#: Airflow's components for the LocalExecutor (``airflow <args>``). The scheduler and
#: triggerer skip their log servers: those bind every interface, and the API server
#: reads the task logs from $AIRFLOW_HOME/logs on this machine anyway.
COMPONENTS: dict[str, list[str]] = {
    "api-server": ["api-server", "--host", API_HOST, "--port", str(API_PORT)],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
#: Components started only once the API server answers (they start tasks, and tasks call
#: its execution API); the others start at once, so the DAGs are parsed meanwhile.
AFTER_API: tuple[str, ...] = ("scheduler",)


class StackError(RuntimeError):
    """A step of the local stack failed; the message names it and its log file."""


def main() -> int:
    """Start the stack and block until Ctrl-C; return the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s run_local %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    LOCAL.mkdir(parents=True, exist_ok=True)
    stack: list[object] = []
    try:
        _check_ports()
        events_dsn, airflow_sql_conn, events_conn_uri = _databases(stack)
        s3_endpoint = _s3(stack)
        pixel_conn = _pixel_management(stack)
        env = _airflow_env(events_conn_uri, airflow_sql_conn, s3_endpoint)
        if pixel_conn:
            env["AIRFLOW_CONN_PIXEL_MANAGEMENT"] = pixel_conn
        os.environ.update(env)
        service_only = pixel_management_server.SERVICE_ONLY_DOMAINS if pixel_conn else ()
        _prepare_data(events_dsn, s3_endpoint, service_only)
        return _run_airflow(env)
    except (PortInUseError, FolderAccessError, StackError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        for thing in reversed(stack):
            try:
                thing.stop()  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - best effort on shutdown
                log.warning("stopping %s: %s", thing, exc)
        log.info("stopped")


def _check_ports() -> None:
    """Fail within seconds, naming port and variable, when a port the stack needs is taken.

    :raises PortInUseError: the first busy port (UI/API, local S3 server, demo pixel service).
    """
    devstack.check_port_free(
        API_PORT, setting="AIRFLOW__API__PORT", purpose="the Airflow UI and API", host=API_HOST
    )
    if S3_LOCAL:
        devstack.check_port_free(S3_PORT, setting="EVENTS_S3_PORT", purpose="the local S3 server")
    if not os.environ.get("AIRFLOW_CONN_PIXEL_MANAGEMENT"):
        devstack.check_port_free(
            PIXEL_PORT, setting="EVENTS_PIXEL_PORT", purpose="the demo pixel management service"
        )


def _databases(stack: list[object]) -> tuple[str, str, str]:
    """Start the embedded PostgreSQL unless both databases are given; return the events DSN,
    Airflow's SQLAlchemy URI and the ``events_db`` connection URI.

    Its data stays in ``$EVENTS_HOME/pg/data``; folder modes change only inside ``$EVENTS_HOME``.
    """
    events_uri = os.environ.get("EVENTS_DB_URI")
    airflow_conn = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    pg = None
    if not events_uri or not airflow_conn:
        pg = devstack.start_postgres(LOCAL / "pg" / "data", confine_to=LOCAL)
        stack.append(pg)
        for name in ("events", "airflow"):
            pg.create_database(name)
    if events_uri:
        events_dsn = events_uri.replace("postgres://", "postgresql://", 1)
        conn_uri = events_uri
        log.info("events database: EVENTS_DB_URI")
    else:
        assert pg is not None
        events_dsn, conn_uri = pg.dsn("events"), pg.airflow_uri("events")
        log.info("events database: embedded PostgreSQL (%s)", pg.data_dir)
    airflow_conn = airflow_conn or pg.sqlalchemy_uri("airflow")  # type: ignore[union-attr]
    return events_dsn, airflow_conn, conn_uri


def _s3(stack: list[object]) -> str:
    """Start the local S3 server unless ``EVENTS_S3_ENDPOINT`` is set; return the endpoint.

    A real endpoint is used with the AWS credential chain (``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``, a profile...); placeholder credentials go to the local server only.
    """
    endpoint = os.environ.get("EVENTS_S3_ENDPOINT")
    if endpoint:
        log.info("S3: %s (EVENTS_S3_ENDPOINT, credentials from the AWS_* environment)", endpoint)
        return endpoint
    s3 = devstack.start_s3(S3_PORT)
    stack.append(s3)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", devstack.LOCAL_AWS_KEY)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", devstack.LOCAL_AWS_SECRET)
    os.environ.setdefault("AWS_DEFAULT_REGION", devstack.LOCAL_REGION)
    log.info("S3: local server at %s (in memory; demo data is re-created each start)", s3.endpoint_url)
    return s3.endpoint_url


def _pixel_management(stack: list[object]) -> str | None:
    """Start the demo pixel management service; return its connection (None: the user's own)."""
    if os.environ.get("AIRFLOW_CONN_PIXEL_MANAGEMENT"):
        log.info("pixel management service: AIRFLOW_CONN_PIXEL_MANAGEMENT")
        return None
    server = pixel_management_server.start(PIXEL_PORT)
    stack.append(server)
    log.info("pixel management service: demo server at %s", server.url)
    return server.connection_json()


def _ip_hash_secret() -> str:
    path = LOCAL / "ip_hash_secret"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _demo_start_date() -> str:
    """Start the DAGs 3 hours before the first local run (kept across restarts)."""
    path = LOCAL / "start_date"
    if not path.exists():
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        path.write_text(start.isoformat())
    return path.read_text().strip()


def _airflow_env(events_conn_uri: str, airflow_sql_conn: str, s3_endpoint: str) -> dict[str, str]:
    home = LOCAL / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_sql_conn,
        "AIRFLOW__API__HOST": API_HOST,
        "AIRFLOW__API__PORT": str(API_PORT),
        # tasks reach the execution API here (the default assumes localhost:8080)
        "AIRFLOW__API__BASE_URL": f"http://{API_HOST}:{API_PORT}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{API_HOST}:{API_PORT}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW_CONN_EVENTS_DB": events_conn_uri,
        "AIRFLOW_CONN_AWS_DEFAULT": devstack.aws_connection_json(s3_endpoint, local=S3_LOCAL),
        "AIRFLOW_VAR_EVENTS_LANDING_BUCKET": LANDING,
        "AIRFLOW_VAR_EVENTS_BACKUP_BUCKET": BACKUP,
        "AIRFLOW_VAR_EVENTS_IP_HASH_SECRET": _ip_hash_secret(),
        "EVENTS_PIPELINE_START_DATE": _demo_start_date(),
    }
    # Anything the user exported wins over these defaults.
    return {k: os.environ.get(k, v) for k, v in env.items()}


def _prepare_data(events_dsn: str, s3_endpoint: str, service_only: tuple[str, ...] = ()) -> None:
    """Migrate, seed the demo clients, create the buckets and drop the demo landing files.

    On an events database without landing files (the first start) the files of
    the two closed hours before now are loaded first, through the ingest code,
    and dated back into their hours (``devtools/demo_history.py``): the first
    export runs then deliver Parquet within minutes instead of an hour later.
    The current hour's files are the same bytes all hour long and are not
    uploaded again when the registry already has them: a restart within the
    hour loads nothing twice.

    Expects the Airflow environment of :func:`_airflow_env` in ``os.environ``.

    :param events_dsn: libpq connection string of the events database.
    :param s3_endpoint: the S3 endpoint.
    :param service_only: demo domains left to the pixel management service (its
        demo server runs): one attribution sync also runs before the first exports.
    :raises StackError: loading the history failed (names its log file).
    """
    import psycopg

    from events_pipeline.common.migrations import apply_migrations
    from events_pipeline.common.partitions import ensure_partitions_around

    try:
        conn = psycopg.connect(events_dsn, connect_timeout=15)
    except psycopg.OperationalError as exc:
        source = "EVENTS_DB_URI" if os.environ.get("EVENTS_DB_URI") else "the embedded PostgreSQL"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise StackError(f"cannot connect to the events database ({source}): {first_line}") from exc
    with conn:
        applied = apply_migrations(conn)
        ensure_partitions_around(conn)
        log.info("migrations: %s", ", ".join(applied) or "none pending")
        _seed_clients(conn, service_only)
        row = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM landing_files)").fetchone()
        first_start = bool(row and row[0])
    buckets = [LANDING, BACKUP] + [f"{c.client_id}-analytics" for c in demo_data.DEMO_CLIENTS]
    devstack.create_buckets(s3_endpoint, buckets, local=S3_LOCAL)
    s3 = devstack.s3_client(s3_endpoint, local=S3_LOCAL)
    now = datetime.now(UTC)
    if first_start:
        _load_history(s3, demo_data.history_files(now), sync_attribution=bool(service_only))
    files = demo_data.current_files(now)
    landed = _registered_keys(events_dsn, [f.key for f in files])
    for f in files:
        if f.key not in landed:
            s3.put_object(Bucket=LANDING, Key=f.key, Body=f.body)
    if landed:
        log.info(
            "demo files of this hour already loaded (restart within the hour): %s", ", ".join(sorted(landed))
        )
    fresh = [f.key for f in files if f.key not in landed]
    if fresh:
        log.info("demo landing files for events_ingest in s3://%s/: %s", LANDING, ", ".join(fresh))


def _registered_keys(events_dsn: str, keys: list[str]) -> set[str]:
    """The ``keys`` that the ingest registry (``landing_files``) already knows in the landing bucket."""
    import psycopg

    with psycopg.connect(events_dsn) as conn:
        rows = conn.execute(
            "SELECT key FROM landing_files WHERE bucket = %s AND key = ANY(%s)", (LANDING, keys)
        ).fetchall()
    return {r[0] for r in rows}


def _load_history(s3: object, files: list[demo_data.DemoFile], *, sync_attribution: bool) -> None:
    """Upload the history files, load them with the ingest code and date them back (own process).

    :param s3: a boto3 S3 client.
    :param files: :func:`demo_data.history_files`.
    :param sync_attribution: run one attribution sync before dating back.
    :raises StackError: the loader failed or took over 5 minutes (names its log file).
    """
    for f in files:
        s3.put_object(Bucket=LANDING, Key=f.key, Body=f.body)  # type: ignore[attr-defined]
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "demo-history.log"
    argv = [sys.executable, "-m", "devtools.demo_history"]
    argv += [f"{f.key}={f.delivered_at.isoformat()}" for f in files if f.delivered_at]
    if sync_attribution:
        argv.append("--sync-attribution")
    result_path = LOG_DIR / "demo-history.json"
    argv += ["--result", str(result_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}
    started = time.monotonic()
    with log_path.open("ab") as err:
        try:
            result = subprocess.run(
                argv, env=env, cwd=REPO, stdout=err, stderr=subprocess.STDOUT, timeout=300, check=False
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"loading the demo history took over 300 s; see {log_path}") from None
    if result.returncode != 0:
        raise StackError(f"loading the demo history failed (exit code {result.returncode}); see {log_path}")
    moved = json.loads(result_path.read_text())
    log.info(
        "demo history: %s loaded and dated back into their hours in %.0f s (%s rows)",
        ", ".join(f"{f.key} -> {f.delivered_at:%H:%M}" for f in files if f.delivered_at),
        time.monotonic() - started,
        sum(moved.values()),
    )


def _seed_clients(conn: object, service_only: tuple[str, ...] = ()) -> None:
    for c in demo_data.DEMO_CLIENTS:
        conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO clients (client_id, name, privacy_level, export_bucket, export_prefix) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (client_id) DO NOTHING",
            (c.client_id, c.name, c.privacy_level, f"{c.client_id}-analytics", f"events/{c.client_id}"),
        )
        for domain in c.domains:
            if domain in service_only:  # left to events_attribution_sync and the demo service
                continue
            conn.execute(  # type: ignore[attr-defined]
                "INSERT INTO client_domains (domain, client_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (domain, c.client_id),
            )
    conn.commit()  # type: ignore[attr-defined]
    log.info("demo clients: %s", ", ".join(c.client_id for c in demo_data.DEMO_CLIENTS))


def _run_airflow(env: dict[str, str]) -> int:
    """Migrate Airflow's database, start its components, report when healthy, run until Ctrl-C.

    :param env: the Airflow environment (:func:`_airflow_env`).
    :return: 0 after Ctrl-C / SIGTERM, 1 when a component stopped by itself.
    :raises StackError: ``airflow db migrate`` failed, or a component died while starting.
    """
    run_env = {**os.environ, **env}
    # components start `airflow` by name (the scheduler's task processes too)
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env.get('PATH', '')}"
    stop = {"asked": False}

    def _stop(signum: int, _frame: object) -> None:
        if not stop["asked"]:
            log.info("stopping airflow (signal %d), this takes ~10-30 s...", signum)
        stop["asked"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    _migrate_airflow(run_env)
    if stop["asked"]:
        return 0
    url = f"http://{API_HOST}:{API_PORT}"
    procs = _start_airflow(run_env, url, stop)
    try:
        if _wait_ready(url, procs, stop):
            _print_banner(url, env)
        return _supervise(procs, stop)
    finally:
        _stop_airflow(procs)


def _migrate_airflow(env: dict[str, str]) -> None:
    """``airflow db migrate`` once, before the components start (they share its ``airflow.cfg``).

    :raises StackError: it failed or took longer than 5 minutes (names its log file).
    """
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "airflow-db-migrate.log"
    log.info("airflow db migrate (output in %s)", log_path)
    with log_path.open("ab") as out:
        try:
            code = subprocess.run(
                [_airflow_bin(), "db", "migrate"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=300,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            raise StackError(f"airflow db migrate took over 300 s; see {log_path}") from None
    if code != 0:
        raise StackError(f"airflow db migrate exited with code {code}; see {log_path}:\n{_tail(log_path)}")


def _airflow_bin() -> str:
    return str(Path(sys.executable).parent / "airflow")


def _start_airflow(
    env: dict[str, str], url: str, stop: dict[str, bool]
) -> dict[str, subprocess.Popen[bytes]]:
    """Start every component of :data:`COMPONENTS`, each in its own process group, output to ``LOG_DIR``.

    The components of :data:`AFTER_API` start once the API server answers: the tasks they
    start talk to its execution API, and a task started before it listens fails its first
    try (connection refused) and waits for a retry.

    :param env: the environment of the components.
    :param url: the API server's base URL.
    :param stop: set by the signal handler; a Ctrl-C while waiting starts nothing more.
    :return: component name -> process.
    :raises StackError: a component exited while the API server was not answering yet.
    """
    procs = {
        name: _start_component(name, args, env) for name, args in COMPONENTS.items() if name not in AFTER_API
    }
    started = time.monotonic()
    next_warning = START_TIMEOUT
    while not _health(url):
        if stop["asked"]:
            return procs
        problem = _dead(procs)
        if problem:
            _stop_airflow(procs)
            raise StackError(problem)
        waited = time.monotonic() - started
        if waited >= next_warning:
            log.warning(
                "the api server does not answer at %s/api/v2/monitor/health after %.0f s "
                "(EVENTS_AIRFLOW_START_TIMEOUT=%.0f), still waiting; log %s",
                url,
                waited,
                START_TIMEOUT,
                _component_log("api-server"),
            )
            next_warning += START_TIMEOUT
        time.sleep(1)
    log.info("api server answers after %.0f s; starting %s", time.monotonic() - started, ", ".join(AFTER_API))
    procs.update({name: _start_component(name, COMPONENTS[name], env) for name in AFTER_API})
    log.info("started airflow %s (output in %s/airflow-*.log)", ", ".join(procs), LOG_DIR)
    return procs


def _start_component(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``airflow <args>`` in its own process group, output appended to its log file."""
    with _component_log(name).open("ab") as out:
        return subprocess.Popen(
            [_airflow_bin(), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _component_log(name: str) -> Path:
    return LOG_DIR / f"airflow-{name}.log"


def _tail(path: Path, lines: int = 8) -> str:
    """The last ``lines`` lines of ``path``, indented (empty when unreadable)."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(f"    {line}" for line in text)


def _dead(procs: dict[str, subprocess.Popen[bytes]]) -> str | None:
    """A message for the first component that exited, or None while all run."""
    for name, proc in procs.items():
        if proc.poll() is not None:
            log_path = _component_log(name)
            return f"airflow {name} exited with code {proc.returncode}; see {log_path}:\n{_tail(log_path)}"
    return None


def _health(url: str) -> dict[str, str]:
    """Component -> status from ``/api/v2/monitor/health`` (empty while the API server does not answer)."""
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as resp:  # noqa: S310
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return {}
    return {name: str((part or {}).get("status")) for name, part in body.items() if isinstance(part, dict)}


def _wait_ready(url: str, procs: dict[str, subprocess.Popen[bytes]], stop: dict[str, bool]) -> bool:
    """Wait until the API server answers and reports a healthy scheduler and dag-processor.

    After :data:`START_TIMEOUT` seconds (and again every as many), says which part
    is not up yet and where its log is, instead of waiting silently.

    :return: True when ready, False when stopped first.
    :raises StackError: a component exited meanwhile (names it, its exit code and log).
    """
    started = time.monotonic()
    next_warning = START_TIMEOUT
    while not stop["asked"]:
        problem = _dead(procs)
        if problem:
            raise StackError(problem)
        health = _health(url)
        if health and all(health.get(k) == "healthy" for k in ("metadatabase", "scheduler", "dag_processor")):
            log.info("airflow healthy after %.0f s", time.monotonic() - started)
            return True
        waited = time.monotonic() - started
        if waited >= next_warning:
            waiting = {"api-server": f"no answer at {url}/api/v2/monitor/health"} if not health else {}
            for part, name in (("scheduler", "scheduler"), ("dag_processor", "dag-processor")):
                if health and health.get(part) != "healthy":
                    waiting[name] = f"{part} {health.get(part)}"
            log.warning(
                "airflow is not up after %.0f s (EVENTS_AIRFLOW_START_TIMEOUT=%.0f), still waiting: %s",
                waited,
                START_TIMEOUT,
                "; ".join(f"{what}, log {_component_log(name)}" for name, what in waiting.items()),
            )
            next_warning += START_TIMEOUT
        time.sleep(1)
    return False


def _supervise(procs: dict[str, subprocess.Popen[bytes]], stop: dict[str, bool]) -> int:
    """Block until a signal (0) or until a component exits by itself (1, logged with its log file)."""
    while not stop["asked"]:
        problem = _dead(procs)
        if problem:
            log.error("%s", problem)
            return 1
        time.sleep(0.5)
    return 0


def _stop_airflow(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Stop the components: scheduler, dag-processor and triggerer first (in parallel), the API
    server last (running tasks report their end to it); each with its whole process group."""
    from concurrent.futures import ThreadPoolExecutor

    first = [p for name, p in procs.items() if name != "api-server"]
    last = [p for name, p in procs.items() if name == "api-server"]
    for group in (first, last):
        if group:
            with ThreadPoolExecutor(max_workers=len(group)) as pool:
                list(pool.map(_stop_process_group, group))


def _stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a component and every process it started (task processes, API server workers...).

    SIGINT to the component first (its own clean shutdown), then SIGTERM and finally
    SIGKILL to its whole process group, so no orphan survives Ctrl-C.
    """
    for sig, grace in ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        target_alive = proc.poll() is None
        if not target_alive and not _group_alive(proc.pid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig == signal.SIGINT and target_alive:
                os.kill(proc.pid, sig)
            else:
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (proc.poll() is None or _group_alive(proc.pid)):
            time.sleep(0.5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


def _print_banner(url: str, env: dict[str, str]) -> None:
    users = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin").split(",")[0].split(":")[0]
    pw_file = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = "see " + str(pw_file)
    with contextlib.suppress(OSError, ValueError):
        password = json.loads(pw_file.read_text()).get(users, password)
    client_buckets = ", ".join(f"{c.client_id}-analytics" for c in demo_data.DEMO_CLIENTS)
    print(
        f"\n  Airflow UI: {url}\n  login: {users} / {password}\n"
        f"  landing bucket: s3://{LANDING}/incoming/  (S3 endpoint in connection aws_default)\n"
        f"  client buckets: {client_buckets}; backup: {BACKUP}\n"
        "  next minutes: events_ingest loads this hour's demo files, events_export catches up the\n"
        "  hours since the start date (Parquet in the client buckets), events_health checks the\n"
        "  last hour (README: 'The first hour of make run')\n"
        f"  logs: {LOG_DIR}/airflow-*.log, task logs under {Path(env['AIRFLOW_HOME']) / 'logs'}\n"
        "  Ctrl-C stops Airflow, the S3 server and PostgreSQL.\n",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
