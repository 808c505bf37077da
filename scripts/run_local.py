"""Run the pipeline locally: PostgreSQL, an S3 server, demo data and Airflow.

This is what ``make run`` calls. It starts (each skipped when you point it at a
real service through the environment):

- an embedded PostgreSQL (pgserver) with data kept in ``.local/pgdata``
  (databases ``events`` and ``airflow``), unless ``EVENTS_DB_URI`` is set;
- moto's S3 server on 127.0.0.1:``EVENTS_S3_PORT`` (9000), unless
  ``EVENTS_S3_ENDPOINT`` is set (MinIO, real S3 through ``AWS_*`` credentials);
- a demo pixel management service on 127.0.0.1:``EVENTS_PIXEL_PORT`` (a free
  port by default) for ``AIRFLOW_CONN_PIXEL_MANAGEMENT``, unless that is set;
  the demo then leaves ``initech.io`` out of ``client_domains`` so the sync maps it;

then creates the buckets, applies migrations, seeds the demo clients and drops
demo landing files, and runs ``airflow standalone`` with every DAG unpaused.
Ctrl-C stops everything it started.
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

log = logging.getLogger("run_local")

LOCAL = Path(os.environ.get("EVENTS_HOME", REPO / ".local")).resolve()
LANDING = os.environ.get("AIRFLOW_VAR_EVENTS_LANDING_BUCKET", "events-landing")
BACKUP = os.environ.get("AIRFLOW_VAR_EVENTS_BACKUP_BUCKET", "events-backup")
API_HOST = os.environ.get("AIRFLOW__API__HOST", "127.0.0.1")
API_PORT = int(os.environ.get("AIRFLOW__API__PORT", "8080"))
S3_PORT = int(os.environ.get("EVENTS_S3_PORT", "9000"))
PIXEL_PORT = int(os.environ.get("EVENTS_PIXEL_PORT", "0"))


def main() -> int:
    """Start the stack and block until Ctrl-C; return the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s run_local %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    LOCAL.mkdir(parents=True, exist_ok=True)
    stack: list[object] = []
    try:
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
    finally:
        for thing in reversed(stack):
            try:
                thing.stop()  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - best effort on shutdown
                log.warning("stopping %s: %s", thing, exc)
        log.info("stopped")


def _databases(stack: list[object]) -> tuple[str, str, str]:
    events_uri = os.environ.get("EVENTS_DB_URI")
    airflow_conn = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    pg = None
    if not events_uri or not airflow_conn:
        pg = devstack.start_postgres(LOCAL / "pg" / "data")
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
    endpoint = os.environ.get("EVENTS_S3_ENDPOINT")
    if endpoint:
        log.info("S3: %s (EVENTS_S3_ENDPOINT)", endpoint)
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
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW_CONN_EVENTS_DB": events_conn_uri,
        "AIRFLOW_CONN_AWS_DEFAULT": devstack.aws_connection_json(s3_endpoint),
        "AIRFLOW_VAR_EVENTS_LANDING_BUCKET": LANDING,
        "AIRFLOW_VAR_EVENTS_BACKUP_BUCKET": BACKUP,
        "AIRFLOW_VAR_EVENTS_IP_HASH_SECRET": _ip_hash_secret(),
        "EVENTS_PIPELINE_START_DATE": _demo_start_date(),
    }
    # Anything the user exported wins over these defaults.
    return {k: os.environ.get(k, v) for k, v in env.items()}


def _prepare_data(events_dsn: str, s3_endpoint: str, service_only: tuple[str, ...] = ()) -> None:
    import boto3
    import psycopg

    from events_pipeline.common.migrations import apply_migrations
    from events_pipeline.common.partitions import ensure_partitions_around

    with psycopg.connect(events_dsn) as conn:
        applied = apply_migrations(conn)
        ensure_partitions_around(conn)
        log.info("migrations: %s", ", ".join(applied) or "none pending")
        _seed_clients(conn, service_only)
    buckets = [LANDING, BACKUP] + [f"{c.client_id}-analytics" for c in demo_data.DEMO_CLIENTS]
    devstack.create_buckets(s3_endpoint, buckets)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    keys = []
    for i in range(6):
        hour = now - timedelta(hours=5 - i)
        events = list(demo_data.iter_events(2_000, start=hour, seed=i))
        key = f"incoming/collector-1/{hour:%Y/%m/%d/%H}/batch-{i:03d}.ndjson.gz"
        s3.put_object(Bucket=LANDING, Key=key, Body=demo_data.ndjson_bytes(events))
        keys.append(key)
    good = [json.dumps(e) for e in demo_data.iter_events(200, start=now, seed=99)]
    mixed = "\n".join(good[:100] + list(demo_data.BAD_LINES) + good[100:]) + "\n"
    key = f"incoming/collector-2/{now:%Y/%m/%d}/mixed-{now:%H}.ndjson"
    s3.put_object(Bucket=LANDING, Key=key, Body=mixed.encode())
    keys.append(key)
    log.info("demo landing files in s3://%s/: %s", LANDING, ", ".join(keys))


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
    run_env = dict(os.environ)
    run_env.update(env)
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env.get('PATH', '')}"
    logfile = LOCAL / "airflow" / "standalone.log"
    log.info("starting airflow standalone (output in %s)", logfile)
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "standalone"],
            env=run_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stop = {"asked": False}

    def _stop(signum: int, _frame: object) -> None:
        if not stop["asked"]:
            log.info("stopping airflow (signal %d), this takes ~10-30 s...", signum)
        stop["asked"] = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    url = f"http://{API_HOST}:{API_PORT}"
    if _wait_healthy(url, proc):
        _print_banner(url, env)
    while proc.poll() is None and not stop["asked"]:
        time.sleep(0.5)
    _stop_process_group(proc)
    if not stop["asked"]:
        log.error("airflow standalone exited with code %s; see %s", proc.returncode, logfile)
        return proc.returncode or 1
    return 0


def _stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop standalone and every process it started (scheduler, workers, dag-processor).

    SIGINT to standalone first (its own clean shutdown), then SIGTERM and finally
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
    print(
        f"\n  Airflow UI: {url}\n  login: {users} / {password}\n"
        f"  landing bucket: s3://{LANDING}/incoming/  (S3 endpoint in connection aws_default)\n"
        "  Ctrl-C stops Airflow, the S3 server and PostgreSQL.\n",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
