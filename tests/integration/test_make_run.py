"""``make run``: what its start script (scripts/run_local.py) promises on a fresh copy of the repo.

The fast tests run in every suite: busy ports are reported within seconds, the
demo's landing files are the same bytes all hour and keep the health checks
green, a real S3 endpoint never gets the local placeholder credentials, the
embedded PostgreSQL changes no folder mode outside ``EVENTS_HOME``, and the data
preparation dates the history back and loads nothing twice on a restart.

The whole-stack test is opt-in (``pytest -m make_run``, or ``make test-run``;
about 4 minutes, too long for the default run's budget): it copies the working
tree to a temporary folder (what a fresh clone has: tracked and new files, no
``.local``, no ``.env``), runs the start script there with ``EVENTS_HOME`` in a
temporary folder and free ports, waits (bounded) for Parquet in a demo client's
bucket and a green ``events_health`` run through the REST API, checks that
everything listens on loopback, then stops it with SIGINT and checks that
nothing is left running and no folder mode changed.
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools import demo_data, devstack

REPO = Path(__file__).resolve().parents[2]

#: Bounds of the whole-stack test (seconds): generous, they only stop a hung run.
START_BOUND = 300.0
RESULT_BOUND = 600.0
STOP_BOUND = 120.0


# ------------------------------------------------------------------ fast: every suite


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a start script: the test run's own Airflow/pipeline/AWS settings removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "EVENTS_", "AWS_"))}
    env.update(extra)
    return env


def test_busy_s3_port_is_reported_within_seconds_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "run_local.py")],
            env=_clean_env(
                EVENTS_HOME=str(tmp_path / "home"),
                EVENTS_S3_PORT=str(port),
                AIRFLOW__API__PORT=str(devstack.free_port()),
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert time.monotonic() - started < 30, "a busy port must be reported within seconds"
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"port {port} on 127.0.0.1 (the local S3 server) is already in use" in result.stderr
    assert "EVENTS_S3_PORT=" in result.stderr
    assert not (tmp_path / "home" / "pg").exists(), "nothing may start before the ports are checked"


def test_busy_api_port_is_reported_naming_the_variable() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(devstack.PortInUseError, match=rf"port {port} .*AIRFLOW__API__PORT=\d+ make run"):
            devstack.check_port_free(port, setting="AIRFLOW__API__PORT", purpose="the Airflow UI and API")
    devstack.check_port_free(0, setting="X", purpose="any free port")  # nothing to check


def test_airflow_not_up_in_time_is_reported_with_its_log_files(monkeypatch, tmp_path, caplog) -> None:
    """No silent wait: after the start timeout, which part is missing and where its log is."""
    import logging
    import threading

    run_local = importlib.import_module("scripts.run_local")
    monkeypatch.setattr(run_local, "LOG_DIR", tmp_path)
    monkeypatch.setattr(run_local, "START_TIMEOUT", 1.0)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    stop = {"asked": False}
    timer = threading.Timer(3.0, lambda: stop.update(asked=True))
    try:
        timer.start()
        with caplog.at_level(logging.WARNING, logger="run_local"):
            ready = run_local._wait_ready(
                f"http://127.0.0.1:{devstack.free_port()}", {"api-server": sleeper}, stop
            )
    finally:
        timer.cancel()
        sleeper.kill()
        sleeper.wait()
    assert ready is False
    warnings = [r.getMessage() for r in caplog.records if "not up after" in r.getMessage()]
    assert warnings, caplog.text
    assert f"log {tmp_path / 'airflow-api-server.log'}" in warnings[0]
    assert "EVENTS_AIRFLOW_START_TIMEOUT" in warnings[0]

    (tmp_path / "airflow-scheduler.log").write_text("boom: the last words\n")
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    with pytest.raises(
        run_local.StackError, match=r"(?s)airflow scheduler exited with code 3; see .*boom: the last words"
    ):
        run_local._wait_ready("http://127.0.0.1:1", {"scheduler": dead}, {"asked": False})


def test_demo_files_are_the_same_bytes_all_hour() -> None:
    """A restart within the hour uploads identical objects (same ETag): nothing new to load."""
    hour = datetime(2026, 11, 27, 10, tzinfo=UTC)
    early, late = (
        demo_data.current_files(hour + timedelta(minutes=1)),
        demo_data.current_files(hour + timedelta(minutes=59)),
    )
    assert [(f.key, f.body) for f in early] == [(f.key, f.body) for f in late]
    assert [f.key for f in demo_data.current_files(hour + timedelta(hours=1))] != [f.key for f in early]
    history = demo_data.history_files(hour + timedelta(minutes=5))
    assert [f.delivered_at for f in history] == [
        hour - timedelta(hours=2) + timedelta(minutes=55),
        hour - timedelta(hours=1) + timedelta(minutes=55),
    ]
    assert history[0].body == demo_data.history_files(hour + timedelta(minutes=50))[0].body
    assert demo_data.ndjson_bytes([{"a": 1}]) == demo_data.ndjson_bytes([{"a": 1}])  # gzip without mtime


def test_demo_traffic_keeps_health_thresholds_green() -> None:
    """At most 4 % unattributed (unknown site + the site left to the pixel service) and 0.3 % rejected."""
    from events_pipeline.health.checks import MAX_REJECTED_RATE, MIN_ATTRIBUTION_RATE

    seeded = {d for c in demo_data.DEMO_CLIENTS for d in c.domains} - {"initech.io"}
    now = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
    for f in demo_data.history_files(now) + demo_data.current_files(now):
        body = gzip.decompress(f.body) if f.key.endswith(".gz") else f.body
        events = []
        for line in body.decode().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        sites = [e.get("site_id", "") for e in events if e.get("timestamp") and e.get("event_id")]
        attributed = sum(1 for s in sites if any(s == d or s.endswith("." + d) for d in seeded))
        assert len(sites) == f.events, f.key
        assert attributed / len(sites) >= MIN_ATTRIBUTION_RATE.default, (f.key, attributed / len(sites))
        assert f.bad_lines / (f.events + f.bad_lines) <= MAX_REJECTED_RATE.default, f.key


def test_real_s3_endpoint_gets_no_placeholder_credentials(monkeypatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    real = json.loads(devstack.aws_connection_json("https://s3.example.test", local=False))
    assert "login" not in real and "password" not in real  # the AWS credential chain is used
    assert real["extra"] == {"endpoint_url": "https://s3.example.test", "region_name": "eu-central-1"}
    local = json.loads(devstack.aws_connection_json("http://127.0.0.1:9000"))
    assert (local["login"], local["password"]) == (devstack.LOCAL_AWS_KEY, devstack.LOCAL_AWS_SECRET)
    client = devstack.s3_client("https://s3.example.test", local=False)
    assert client.meta.region_name == "eu-central-1"


@pytest.mark.skipif(os.geteuid() != 0, reason="pgserver changes folder modes only when run as root")
def test_embedded_postgres_changes_no_mode_above_its_home(tmp_path: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir(mode=0o700)
    home = outside / "home"
    home.mkdir()
    with pytest.raises(devstack.FolderAccessError, match=rf"cannot enter {outside} .*EVENTS_HOME"):
        devstack.start_postgres(home / "pg" / "data", confine_to=home)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700, "a folder above the home was opened"


def test_prepare_data_dates_history_back_and_a_restart_loads_nothing_twice(
    services, clean_tables, s3, db, monkeypatch, tmp_path
) -> None:
    """First start: two history files in their closed hours (unclaimed, so the catch-up exports
    take them) and this hour's files in incoming/; second start: no new object, no new row."""
    run_local = importlib.import_module("scripts.run_local")
    monkeypatch.setattr(run_local, "LOG_DIR", tmp_path / "logs")
    monkeypatch.setattr(run_local, "LANDING", "test-landing")
    endpoint = s3.meta.endpoint_url
    dsn = db.info.dsn
    now = datetime.now(UTC)
    run_local._prepare_data(dsn, endpoint)
    hour = now.replace(minute=0, second=0, microsecond=0)
    if datetime.now(UTC) >= hour + timedelta(hours=1):
        pytest.skip("the hour changed during the test")
    created = db.execute(
        "SELECT created_at, count(*), count(export_hour) FROM events_log GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(c, n, e) for c, n, e in created] == [
        (hour - timedelta(hours=2) + timedelta(minutes=55), demo_data.DEMO_BATCH_EVENTS, 0),
        (hour - timedelta(hours=1) + timedelta(minutes=55), demo_data.DEMO_BATCH_EVENTS, 0),
    ]
    loaded_at = [r[0] for r in db.execute("SELECT loaded_at FROM landing_files ORDER BY 1")]
    assert loaded_at == [c for c, _, _ in created]
    days = {r[0] for r in db.execute("SELECT day FROM ingest_counts")}
    assert days == {c.date() for c, _, _ in created}
    incoming = sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket="test-landing", Prefix="incoming/")["Contents"]
    )
    assert incoming == sorted(f.key for f in demo_data.current_files(now))

    # Restart within the hour, after events_ingest took this hour's files.
    for key in incoming:
        s3.delete_object(Bucket="test-landing", Key=key)
    db.execute(
        "INSERT INTO landing_files (bucket, key, etag, status) SELECT 'test-landing', k, 'x', 'processed' "
        "FROM unnest(%s::text[]) AS k",
        (incoming,),
    )
    run_local._prepare_data(dsn, endpoint)
    assert s3.list_objects_v2(Bucket="test-landing", Prefix="incoming/").get("KeyCount") == 0
    assert db.execute("SELECT count(*) FROM events_log").fetchone()[0] == 2 * demo_data.DEMO_BATCH_EVENTS


# ------------------------------------------------------- opt-in: the whole stack, for real


@dataclass
class RunningStack:
    """``scripts/run_local.py`` running in a copy of the repo."""

    copy: Path
    home: Path
    api_port: int
    s3_port: int
    runner: subprocess.Popen[bytes]
    log_path: Path
    started: float
    timings: dict[str, float] = field(default_factory=dict)
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.runner.poll() is not None:
            pytest.fail(f"run_local.py exited with {self.runner.returncode}:\n{self.log_tail()}")

    def api(self, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers)  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback only
            return json.loads(resp.read())


def _fresh_copy(target: Path) -> None:
    """Copy what a clone of the working tree has: tracked and new files (no ignored ones, no .git)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        source = REPO / raw.decode()
        if source.is_file():
            (target / raw.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / raw.decode())


def _modes(paths: list[Path]) -> dict[str, int]:
    """Mode of every folder above (and including) each path."""
    folders = {p for path in paths for p in (path, *path.parents)}
    return {str(p): p.stat().st_mode for p in sorted(folders)}


def _tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _stack_processes(home: Path, runner_pid: int) -> list[str]:
    """Processes of the stack still alive: the runner's tree and anything naming the home folder."""
    import psutil

    found = {p.pid: p for p in _tree(runner_pid)}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if str(home) in " ".join(proc.info.get("cmdline") or []):
            found[proc.pid] = proc
    out = []
    for pid, proc in found.items():
        try:
            out.append(f"{pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.fixture(scope="module")
def running_stack() -> Iterator[RunningStack]:
    """A fresh copy of the repo running ``scripts/run_local.py``; stopped with SIGINT afterwards."""
    base = Path(tempfile.mkdtemp(prefix="events-make-run-"))
    base.chmod(0o755)  # as root, PostgreSQL's system user must be able to enter the folders above .local
    copy, home = base / "repo", base / "home"
    copy.mkdir()
    _fresh_copy(copy)
    watched = [home.parent, copy, Path(sys.executable).parent]
    modes_before = _modes(watched)
    api_port, s3_port = devstack.free_port(), devstack.free_port()
    log_path = base / "run_local.log"
    with log_path.open("ab") as out:
        runner = subprocess.Popen(
            [sys.executable, str(copy / "scripts" / "run_local.py")],
            env=_clean_env(
                EVENTS_HOME=str(home), AIRFLOW__API__PORT=str(api_port), EVENTS_S3_PORT=str(s3_port)
            ),
            cwd=copy,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stack = RunningStack(copy, home, api_port, s3_port, runner, log_path, time.monotonic())
    try:
        yield stack
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGINT)
            try:
                runner.wait(STOP_BOUND)
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)
        leftovers = _stack_processes(home, runner.pid)
        changed = {
            p: (oct(m), oct(Path(p).stat().st_mode))
            for p, m in modes_before.items()
            if Path(p).stat().st_mode != m
        }
        print(f"\nmake run timings (s): {stack.timings}; run folder {base}")
        if not leftovers and not changed:
            shutil.rmtree(base, ignore_errors=True)
        assert not leftovers, f"still running after Ctrl-C: {leftovers}"
        assert not changed, f"folder modes changed outside EVENTS_HOME: {changed}"


def _wait(stack: RunningStack, what: str, bound: float, probe: Any) -> Any:
    """Poll ``probe`` every 2 s until it returns something truthy; fail after ``bound`` seconds."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        stack.check_alive()
        value = probe()
        if value:
            stack.timings[what] = round(time.monotonic() - stack.started, 1)
            return value
        time.sleep(2)
    pytest.fail(f"no {what} within {bound:.0f} s:\n{stack.log_tail()}")


def _healthy(stack: RunningStack) -> bool:
    try:
        health = stack.api("/api/v2/monitor/health")
    except (OSError, ValueError):
        return False
    return all(health.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler"))


def _parquet(stack: RunningStack, bucket: str) -> list[str]:
    client = devstack.s3_client(f"http://127.0.0.1:{stack.s3_port}")
    try:
        contents = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    except Exception:  # noqa: BLE001 - the bucket appears during start-up
        return []
    return [o["Key"] for o in contents if o["Key"].endswith(".parquet")]


def _green_health_run(stack: RunningStack) -> dict[str, Any] | None:
    runs = stack.api("/api/v2/dags/events_health/dagRuns?state=success&limit=5")["dag_runs"]
    return runs[0] if runs else None


def _listening_sockets(pids: set[int]) -> list[tuple[int, str, int]]:
    import psutil

    return [
        (c.pid, c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]


@pytest.mark.make_run
@pytest.mark.slow
@pytest.mark.timeout(int(START_BOUND + RESULT_BOUND + STOP_BOUND + 120))
def test_make_run_delivers_parquet_and_a_green_health_run_then_stops(
    request: pytest.FixtureRequest,
) -> None:
    if "make_run" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("opt-in, about 4 minutes: pytest -m make_run (or make test-run)")
    stack = request.getfixturevalue("running_stack")
    _wait(stack, "healthy Airflow", START_BOUND, lambda: _healthy(stack))
    password_file = stack.home / "airflow" / "simple_auth_manager_passwords.json.generated"
    password = json.loads(password_file.read_text())["admin"]
    stack.token = stack.api("/auth/token", {"username": "admin", "password": password})["access_token"]

    keys = _wait(stack, "first Parquet", RESULT_BOUND, lambda: _parquet(stack, "acme-analytics"))
    assert all(k.startswith("events/acme/dt=") for k in keys), keys
    run = _wait(stack, "green events_health run", RESULT_BOUND, lambda: _green_health_run(stack))
    tis = stack.api(f"/api/v2/dags/events_health/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
    assert tis and {ti["state"] for ti in tis} == {"success"}, [(ti["task_id"], ti["state"]) for ti in tis]
    for bucket in ("globex-analytics", "initech-analytics"):
        assert _wait(stack, f"Parquet in {bucket}", RESULT_BOUND, lambda b=bucket: _parquet(stack, b))

    # Everything of the stack listens on loopback only (PostgreSQL: a unix socket).
    pids = {p.pid for p in _tree(stack.runner.pid)}
    sockets = _listening_sockets(pids)
    assert {port for _, _, port in sockets} >= {stack.api_port, stack.s3_port}, sockets
    assert all(ip in ("127.0.0.1", "::1") for _, ip, _ in sockets), sockets

    # Ctrl-C stops everything (the fixture checks no process is left and no mode changed).
    stopping = time.monotonic()
    os.killpg(stack.runner.pid, signal.SIGINT)
    assert stack.runner.wait(STOP_BOUND) == 0, stack.log_tail()
    stack.timings["stop"] = round(time.monotonic() - stopping, 1)
    assert not (stack.home / "pg" / "data" / "postmaster.pid").exists(), "PostgreSQL still running"
