"""Pieces of a local CeleryExecutor stack: a Redis broker, Airflow's processes, the REST API.

Used by ``scripts/run_celery.py`` (``make run EXECUTOR=celery``) and by
``tests/integration/test_celery_stack.py`` (``pytest -m celery``); never by
production code, which gets its broker and workers from docker-compose.yaml
or the platform.

- :func:`ensure_redis_server` finds ``redis-server`` (or ``valkey-server``) and,
  as root on Debian, installs Debian's ``redis-server`` package with apt-get
  when it is missing; :func:`start_redis` runs a private server on 127.0.0.1
  whose data and log live in the run's folder.
- :func:`celery_env` is the Airflow configuration that turns the local stack
  into a CeleryExecutor one (broker, result backend, execution API address).
- :func:`start_process` starts one Airflow component with its output in a log
  file, in its own process group so that stopping it stops its children.
- :func:`task_hostname` is the ``[core] hostname_callable`` of the local
  workers: every worker runs on this one machine, so each gets its own name
  (``EVENTS_TASK_HOSTNAME``) and the task instances it runs carry it.
- :class:`AirflowApi` is a small REST API client (``POST /auth/token``, bearer token).
- :func:`workloads_in_log` reads which task instances a worker's log says it executed.

Everything binds to 127.0.0.1. Heavy imports stay inside functions: a task
process imports this module (for :func:`task_hostname`) on every start.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

#: Server binaries accepted as the broker, in order of preference.
REDIS_BINARIES = ("redis-server", "valkey-server")
#: Debian package installed when no binary is found.
REDIS_APT_PACKAGE = "redis-server"
#: Environment variable naming a broker binary explicitly (skips the search and the install).
REDIS_BINARY_ENV = "EVENTS_REDIS_SERVER"
#: Environment variable read by :func:`task_hostname`.
TASK_HOSTNAME_ENV = "EVENTS_TASK_HOSTNAME"
#: Import path of :func:`task_hostname`, for ``AIRFLOW__CORE__HOSTNAME_CALLABLE``.
TASK_HOSTNAME_CALLABLE = f"{__name__}.task_hostname"
#: Bounds of the apt-get steps (seconds); a held dpkg lock is waited for inside them.
APT_UPDATE_TIMEOUT = 240.0
APT_INSTALL_TIMEOUT = 300.0


class BrokerUnavailableError(RuntimeError):
    """No Redis/Valkey server binary could be found or installed (the message says what was tried)."""


class StackError(RuntimeError):
    """A process of the stack failed to start or died (the message names it and its log file)."""


# --------------------------------------------------------------------------- broker binary


def find_redis_server() -> str | None:
    """Return the path of a Redis-compatible server binary, or None.

    ``EVENTS_REDIS_SERVER`` wins when set (it must be executable); else
    ``redis-server`` then ``valkey-server`` on ``PATH`` or in ``/usr/bin``.
    """
    explicit = os.environ.get(REDIS_BINARY_ENV)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in REDIS_BINARIES:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/usr/local/bin")
        if found:
            return found
    return None


def ensure_redis_server(log_path: Path, *, install: bool = True) -> str:
    """Return a Redis-compatible server binary, installing Debian's package when needed.

    Installing happens only when no binary is found, ``install`` is true, the
    process runs as root and ``apt-get`` exists; it runs ``apt-get install``
    (after ``apt-get update`` when the package lists do not know the package
    or the first attempt fails), output appended to ``log_path``.

    :param log_path: file receiving apt-get's output.
    :param install: allow installing (``EVENTS_REDIS_INSTALL=0`` turns it off in the callers).
    :raises BrokerUnavailableError: nothing found and nothing could be installed; the
        message says why and names ``log_path`` when apt-get ran.
    """
    found = find_redis_server()
    if found:
        return found
    if os.environ.get(REDIS_BINARY_ENV):
        raise BrokerUnavailableError(f"{REDIS_BINARY_ENV}={os.environ[REDIS_BINARY_ENV]} is not executable")
    wanted = " or ".join(REDIS_BINARIES)
    if not install:
        raise BrokerUnavailableError(
            f"no {wanted} on PATH and installing is turned off (EVENTS_REDIS_INSTALL=0)"
        )
    if os.geteuid() != 0:
        raise BrokerUnavailableError(
            f"no {wanted} on PATH and not root, so not installing it: "
            f"`sudo apt-get install {REDIS_APT_PACKAGE}`, or set {REDIS_BINARY_ENV}"
        )
    apt_get = shutil.which("apt-get")
    if not apt_get:
        raise BrokerUnavailableError(
            f"no {wanted} on PATH and no apt-get to install {REDIS_APT_PACKAGE} with; set {REDIS_BINARY_ENV}"
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("installing Debian package %s with apt-get (output in %s)", REDIS_APT_PACKAGE, log_path)
    started = time.monotonic()
    _apt_install(apt_get, log_path)
    found = find_redis_server()
    if not found:
        raise BrokerUnavailableError(
            f"apt-get installed {REDIS_APT_PACKAGE} but no {wanted} is on PATH; see {log_path}"
        )
    log.info("installed %s in %.0f s: %s", REDIS_APT_PACKAGE, time.monotonic() - started, found)
    return found


def _apt_install(apt_get: str, log_path: Path) -> None:
    """``apt-get install`` the package (after ``apt-get update`` when the lists lack it or it fails once)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=120"]
    install = [apt_get, "install", "-y", "-q", "--no-install-recommends", *lock, REDIS_APT_PACKAGE]
    update = [apt_get, "update", "-q", *lock]
    updated = False
    if not _apt_knows(REDIS_APT_PACKAGE):
        _check_step(update, _run_logged(update, log_path, env, APT_UPDATE_TIMEOUT), log_path)
        updated = True
    code = _run_logged(install, log_path, env, APT_INSTALL_TIMEOUT)
    if code != 0 and not updated:  # stale lists (a removed version): refresh once and retry
        _check_step(update, _run_logged(update, log_path, env, APT_UPDATE_TIMEOUT), log_path)
        code = _run_logged(install, log_path, env, APT_INSTALL_TIMEOUT)
    _check_step(install, code, log_path)


def _check_step(argv: Sequence[str], code: int, log_path: Path) -> None:
    if code != 0:
        raise BrokerUnavailableError(f"`{' '.join(argv[:2])}` exited with code {code}; see {log_path}")


def _apt_knows(package: str) -> bool:
    """Whether the local package lists have a candidate version of ``package``."""
    apt_cache = shutil.which("apt-cache")
    if not apt_cache:
        return False
    try:
        out = subprocess.run(
            [apt_cache, "policy", package], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    match = re.search(r"Candidate:\s*(\S+)", out)
    return bool(match) and match.group(1) != "(none)"  # type: ignore[union-attr]


def _run_logged(argv: Sequence[str], log_path: Path, env: Mapping[str, str], timeout: float) -> int:
    with log_path.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            return subprocess.run(
                list(argv), stdout=out, stderr=subprocess.STDOUT, env=dict(env), timeout=timeout, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            raise BrokerUnavailableError(
                f"`{' '.join(argv[:2])}` did not finish within {timeout:.0f} s; see {log_path}"
            ) from None


# --------------------------------------------------------------------------- processes


@dataclass
class ManagedProcess:
    """A process of the stack, leader of its own process group.

    :param name: short name used in messages (``scheduler``, ``worker-1``...).
    :param process: the Popen handle.
    :param log_path: file receiving its stdout and stderr.
    """

    name: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def failure(self, what: str) -> StackError:
        """A :class:`StackError` naming this process, its exit code and its log file."""
        code = self.process.poll()
        state = "is still running" if code is None else f"exited with code {code}"
        return StackError(f"{self.name} (pid {self.pid}) {what}: it {state}; see {self.log_path}")


def start_process(
    name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, *, cwd: Path | None = None
) -> ManagedProcess:
    """Start ``argv`` in a new session (its own process group), output appended to ``log_path``.

    :param name: the process's short name, for messages.
    :param argv: the command.
    :param env: its full environment.
    :param log_path: its log file (folder created).
    :param cwd: working directory.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
    return ManagedProcess(name=name, process=proc, log_path=log_path)


def stop_process(proc: ManagedProcess, *, grace: float = 30.0) -> None:
    """Stop a process and its group: SIGTERM, then SIGKILL to the group after ``grace`` seconds.

    :param proc: the process.
    :param grace: seconds to wait after SIGTERM (a Celery worker finishes its running tasks).
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not proc.alive() and not group_alive(proc.pid):
            return
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (proc.alive() or group_alive(proc.pid)):
            time.sleep(0.2)


def group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` is still alive."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- redis


@dataclass
class RedisInstance:
    """A private Redis (or Valkey) server on 127.0.0.1.

    :param url: broker URL, ``redis://127.0.0.1:PORT/0``.
    :param port: its TCP port.
    :param managed: the server process.
    """

    url: str
    port: int
    managed: ManagedProcess

    def stop(self) -> None:
        """Stop the server (it keeps no data: persistence is off)."""
        stop_process(self.managed, grace=10.0)


def start_redis(
    binary: str, data_dir: Path, log_dir: Path, *, port: int = 0, timeout: float = 20.0
) -> RedisInstance:
    """Start ``binary`` on 127.0.0.1 with persistence off and wait until it answers PING.

    :param binary: ``redis-server`` or ``valkey-server`` path.
    :param data_dir: its working folder (created).
    :param log_dir: folder of its log, ``redis.log``.
    :param port: TCP port; 0 picks a free one.
    :param timeout: seconds to wait for PING.
    :raises StackError: it exited or did not answer in time (the message names port and log).
    """
    from devtools.devstack import free_port

    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--protected-mode", "yes",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--daemonize", "no",
        "--logfile", "",  # to stdout, i.e. the log file below
    ]  # fmt: skip
    managed = start_process("redis", argv, os.environ, log_dir / "redis.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not managed.alive():
            raise managed.failure(f"did not start on 127.0.0.1:{port} (port set by EVENTS_REDIS_PORT?)")
        if redis_ping(port):
            log.info("Redis broker (%s) on 127.0.0.1:%d", Path(binary).name, port)
            return RedisInstance(url=f"redis://127.0.0.1:{port}/0", port=port, managed=managed)
        time.sleep(0.2)
    stop_process(managed, grace=5.0)
    raise managed.failure(f"did not answer PING on 127.0.0.1:{port} within {timeout:.0f} s")


def redis_ping(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a Redis server answers ``PING`` on ``host:port`` (plain RESP over a socket)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# --------------------------------------------------------------------------- airflow configuration


def celery_env(
    *,
    broker_url: str,
    sql_alchemy_conn: str,
    api_host: str,
    api_port: int,
    workers: int,
    concurrency: int,
    repo: Path,
) -> dict[str, str]:
    """The Airflow settings of a local CeleryExecutor stack (added to the LocalExecutor ones).

    :param broker_url: the Redis URL.
    :param sql_alchemy_conn: Airflow's metadata database (PostgreSQL); the
        Celery result backend is the same database (``db+`` prefix).
    :param api_host: host of the API server (its execution API is what workers call).
    :param api_port: port of the API server.
    :param workers: number of Celery workers.
    :param concurrency: task slots per worker.
    :param repo: the repository (its ``plugins/`` and root go on ``PYTHONPATH``
        so that workers import ``events_pipeline`` and :func:`task_hostname`).
    """
    if not sql_alchemy_conn.startswith(("postgresql", "postgres")):
        raise StackError(
            "the CeleryExecutor needs PostgreSQL as Airflow's metadata database, "
            f"not {sql_alchemy_conn.split(':', 1)[0]} (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)"
        )
    metadata_url = sql_alchemy_conn.replace("postgres://", "postgresql://", 1)
    python_path = [str(repo / "plugins"), str(repo)]
    if os.environ.get("PYTHONPATH"):
        python_path.append(os.environ["PYTHONPATH"])
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(workers * concurrency),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{api_host}:{api_port}/execution/",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
        "AIRFLOW__API__WORKERS": "1",
        "PYTHONPATH": os.pathsep.join(python_path),
    }


def worker_env(base: Mapping[str, str], name: str) -> dict[str, str]:
    """The environment of worker ``name``: tasks it runs report ``name`` as their hostname.

    :param base: the stack's environment.
    :param name: the worker's name (also its ``--celery-hostname``).
    """
    return {
        **base,
        TASK_HOSTNAME_ENV: name,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": TASK_HOSTNAME_CALLABLE,
    }


def task_hostname() -> str:
    """Airflow ``[core] hostname_callable`` of the local workers: ``$EVENTS_TASK_HOSTNAME`` or the FQDN.

    All workers of the local stack share one machine, so the default (the
    FQDN) would give every task instance the same hostname; each worker's
    environment names it instead (like a container's hostname under Compose).
    """
    return os.environ.get(TASK_HOSTNAME_ENV) or socket.getfqdn()


def celery_ping(broker_url: str, names: Sequence[str], timeout: float = 2.0) -> set[str]:
    """Return which of the Celery node names (``celery@worker-1``...) answer a broadcast ping.

    :param broker_url: the broker.
    :param names: node names to ask.
    :param timeout: seconds to wait for replies.
    """
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(destination=list(names), timeout=timeout) or []
    finally:
        app.close()
    return {name for reply in replies for name in reply}


_WORKLOAD_MARK = "Executing workload in Celery:"
_TI_ID_RE = re.compile(r"ti=\w+\(id=UUID\('(?P<id>[0-9a-f-]{36})'\)")
_TI_FIELD_RES = {
    key: re.compile(rf"\b{key}=(?:'(?P<quoted>[^']*)'|(?P<bare>-?\d+))")
    for key in ("dag_id", "run_id", "task_id", "map_index", "try_number")
}


def workloads_in_log(log_path: Path) -> dict[str, dict[str, str]]:
    """Task instances a Celery worker's log says it executed, by task instance id.

    Reads the provider's ``Executing workload in Celery: ... ti=TaskInstance...(id=UUID('...'), ...)``
    lines; each value has whichever of ``dag_id``, ``run_id``, ``task_id``,
    ``map_index`` and ``try_number`` the line shows.

    :param log_path: the worker's log file (missing: nothing executed).
    """
    found: dict[str, dict[str, str]] = {}
    if not log_path.exists():
        return found
    with log_path.open(errors="replace") as lines:
        for line in lines:
            if _WORKLOAD_MARK not in line:
                continue
            ti_part = line[line.index(_WORKLOAD_MARK) :]
            match = _TI_ID_RE.search(ti_part)
            if not match:
                continue
            ti_part = ti_part[match.end() :]
            fields = {}
            for key, regex in _TI_FIELD_RES.items():
                field_match = regex.search(ti_part)
                if field_match:
                    fields[key] = (
                        field_match["quoted"] if field_match["quoted"] is not None else field_match["bare"]
                    )
            found[match["id"]] = fields
    return found


# --------------------------------------------------------------------------- REST API


class AirflowApi:
    """A small client of Airflow 3's REST API (``/api/v2``), logged in through ``POST /auth/token``.

    :param base_url: ``http://127.0.0.1:PORT``.
    :param username: simple auth manager user.
    :param password: its password.
    :param timeout: seconds per request.
    """

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def login(self) -> None:
        """Get a bearer token (``POST /auth/token``)."""
        resp = self._http.post("/auth/token", json=self._credentials)
        if resp.status_code >= 300:
            raise StackError(f"POST {self.base_url}/auth/token: {resp.status_code} {resp.text[:300]}")
        self._token = resp.json()["access_token"]

    def request(self, method: str, path: str, *, json: Any = None, ok_missing: bool = False) -> Any:
        """Call ``/api/v2{path}`` and return its JSON (None for a 404 when ``ok_missing``).

        :param method: HTTP method.
        :param path: path below ``/api/v2``.
        :param json: request body.
        :param ok_missing: return None instead of raising on 404.
        :raises StackError: any other non-2xx answer (status and body in the message).
        """
        if self._token is None:
            self.login()
        for attempt in (1, 2):
            resp = self._http.request(
                method, f"/api/v2{path}", json=json, headers={"Authorization": f"Bearer {self._token}"}
            )
            if resp.status_code == 401 and attempt == 1:  # token expired: log in again once
                self.login()
                continue
            break
        if resp.status_code == 404 and ok_missing:
            return None
        if resp.status_code >= 300:
            raise StackError(f"{method} {self.base_url}/api/v2{path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else None

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run (``/dags/{dag}/dagRuns/{run}/taskInstances``, all pages)."""
        out: list[dict[str, Any]] = []
        while True:
            path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
            page = self.request("GET", f"{path}?limit=100&offset={len(out)}")
            out.extend(page["task_instances"])
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out
