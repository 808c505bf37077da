"""The local stack for development and tests: embedded PostgreSQL and an S3 server.

Used by ``scripts/run_local.py`` (the README's run command) and by the test
session fixtures. Production deployments point the ``events_db`` and
``aws_default`` connections at real services instead and never import this.

Everything listens on 127.0.0.1 only (PostgreSQL on a unix socket). A port that
is taken is reported at once, naming it and the setting that moves it
(:func:`check_port_free`), instead of a server thread that never comes up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
for _noisy in ("pgserver", "werkzeug"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

#: Credentials the local S3 server accepts (any non-empty pair works with moto). Only
#: ever sent to the local moto server: a real endpoint gets the AWS credential chain.
LOCAL_AWS_KEY = "local-access-key"
LOCAL_AWS_SECRET = "local-secret-key"  # noqa: S105 - a placeholder for the local server
LOCAL_REGION = "us-east-1"
#: Loopback address every local server binds to.
LOOPBACK = "127.0.0.1"
#: Longest wait for the S3 server thread to listen (seconds).
S3_START_TIMEOUT = 15.0


#: PostgreSQL settings the local server (dev, tests, benchmarks) gets on top of PostgreSQL's
#: defaults, applied by :func:`configure_postgres` (values as ``SHOW`` prints them, e.g.
#: ``{"max_wal_size": "8GB"}``). None today: the settings measured for the export's marking
#: (WAL, checkpoints, buffers) did not change its ratio enough to impose them
#: (docs/decisions/export-marking-cost.md); ``benchmarks/bench_export.py --pg-setting``
#: measures others.
SERVER_SETTINGS: dict[str, str] = {}


class PortInUseError(RuntimeError):
    """A TCP port a local server needs is taken; the message names the port and its setting."""


def check_port_free(port: int, *, setting: str, purpose: str, host: str = LOOPBACK) -> None:
    """Fail at once when ``host:port`` cannot be bound (another process listens there).

    Binds with ``SO_REUSEADDR`` like the servers themselves do, so a port left
    in ``TIME_WAIT`` by an earlier run counts as free.

    :param port: the TCP port (0 means "any free port": nothing to check).
    :param setting: the environment variable that chooses the port, for the message.
    :param purpose: what would listen there, e.g. ``"the local S3 server"``.
    :param host: the address the server binds to.
    :raises PortInUseError: naming the port, what needs it and how to move it.
    """
    if not port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"port {port} on {host} ({purpose}) is already in use ({exc.strerror}): stop the "
                f"process listening there (`ss -ltnp 'sport = :{port}'` shows it) or choose another "
                f"port with {setting}, e.g. `{setting}={_suggest_port(port)} make run`"
            ) from None


def _suggest_port(port: int) -> int:
    """A port near ``port`` that is free right now (for the error message), else any free one."""
    for candidate in range(port + 1, min(port + 50, 65535)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, candidate))
            except OSError:
                continue
            return candidate
    return free_port()


@dataclass
class PostgresInstance:
    """A running embedded PostgreSQL (pgserver), reached through a unix socket.

    :param data_dir: the PGDATA folder.
    :param socket_dir: folder of the server's unix socket.
    :param server: the pgserver handle (keeps the server alive while referenced).
    """

    data_dir: Path
    socket_dir: str
    server: Any = field(repr=False)

    def dsn(self, database: str = "postgres") -> str:
        """A libpq key/value connection string for ``database``."""
        return f"host={self.socket_dir} user=postgres dbname={database}"

    def airflow_uri(self, database: str) -> str:
        """A ``postgres://`` URI with the socket folder percent-encoded (Airflow style)."""
        return f"postgres://postgres@{urllib.parse.quote(self.socket_dir, safe='')}/{database}"

    def sqlalchemy_uri(self, database: str) -> str:
        """A SQLAlchemy URI (psycopg 3 driver) for Airflow's own metadata database."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def stop(self) -> None:
        """Stop the server (pg_ctl stop)."""
        self.server.cleanup()


class FolderAccessError(RuntimeError):
    """PostgreSQL's system user cannot reach its data or binaries; the message names the folder."""


def start_postgres(
    data_dir: Path,
    *,
    keep_running: bool = False,
    confine_to: Path | None = None,
    settings: Mapping[str, str | None] | None = None,
) -> PostgresInstance:
    """Start (or reuse) an embedded PostgreSQL whose data lives in ``data_dir``.

    As root, pgserver runs PostgreSQL as the system user ``pgserver`` and, so that
    this user can reach the data and the binaries, adds read and search
    permission for others to *every* parent folder of both, up to ``/``. With
    ``confine_to`` it may do so only inside ``confine_to`` (and inside pgserver's
    own package folder); every folder above must already be searchable by others,
    else :class:`FolderAccessError` names it, and no mode outside changes.

    :param data_dir: PGDATA folder; created and initialised when missing. Keep it
        in a dedicated parent (e.g. ``.local/pg/data``).
    :param keep_running: leave the server running when this process exits.
    :param confine_to: the folder whose sub-folders pgserver may open (``.local``
        for ``make run``); ``None`` keeps pgserver's own behaviour (the test fixtures,
        whose scratch folder is private).
    :param settings: server settings (see :func:`configure_postgres`); ``None``:
        :data:`SERVER_SETTINGS`.
    :raises FolderAccessError: with ``confine_to``, a folder above it that others
        cannot search (``o+x``), naming it and the fixes.
    """
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    with _confined_permissions(confine_to, data_dir):
        server = pgserver.get_server(str(data_dir), cleanup_mode=None if keep_running else "stop")
    uri = server.get_uri()
    query = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)
    socket_dir = query.get("host", [str(data_dir)])[0]
    instance = PostgresInstance(data_dir=data_dir, socket_dir=socket_dir, server=server)
    configure_postgres(instance, SERVER_SETTINGS if settings is None else settings)
    log.info("PostgreSQL running, data in %s, socket in %s", data_dir, socket_dir)
    return instance


def configure_postgres(instance: PostgresInstance, settings: Mapping[str, str | None]) -> bool:
    """Set server settings with ``ALTER SYSTEM`` (``None`` resets one); reload, or restart if needed.

    A restart happens only when a setting that PostgreSQL reads at start
    (``pg_settings.context = 'postmaster'``) differs from the running value, i.e. once,
    when the data folder is new; a reused server that has the settings is only reloaded.

    :param instance: the running server.
    :param settings: name -> value in ``SHOW`` form (e.g. ``"8GB"``), or ``None`` to
        reset the name to the configuration file's value.
    :return: whether the server was restarted.
    """
    import psycopg
    from psycopg import sql

    if not settings:
        return False
    with psycopg.connect(instance.dsn(), autocommit=True) as conn:
        restart = False
        for name, value in settings.items():
            row = conn.execute(
                "SELECT context, current_setting(name) FROM pg_settings WHERE name = %s", (name,)
            ).fetchone()
            if row is None:
                raise ValueError(f"PostgreSQL has no setting {name!r}")
            if value is None:
                conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
            else:
                statement = sql.SQL("ALTER SYSTEM SET {} = {}")
                conn.execute(statement.format(sql.Identifier(name), sql.Literal(value)))
            restart = restart or (row[0] == "postmaster" and row[1] != value)
        conn.execute("SELECT pg_reload_conf()")
    if restart:
        from pgserver._commands import pg_ctl

        server = instance.server
        # restart reuses the first start's options (socket folder, no TCP) from postmaster.opts
        pg_ctl(
            ["-w", "-m", "fast", "-l", str(server.log), "restart"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=60,
        )
        server.ensure_postgres_running()
    return restart


@contextlib.contextmanager
def _confined_permissions(root: Path | None, data_dir: Path) -> Iterator[None]:
    """Within the block, pgserver opens folders for its system user only below ``root``.

    Replaces ``pgserver.postgres_server.ensure_prefix_permissions`` (its helper that
    walks every parent folder up to ``/`` adding ``g+rx,o+rx``) by one that changes
    folders inside ``root`` or inside pgserver's package only, and checks that the
    others are already searchable. Nothing changes when not running as root.

    :param root: the folder below which modes may change; ``None``: no confinement.
    :param data_dir: the PGDATA folder (for the message).
    """
    if root is None or os.geteuid() != 0:
        yield
        return
    import pgserver
    import pgserver.postgres_server as server_module

    allowed = (root.resolve(), Path(pgserver.__file__).resolve().parent)
    original = server_module.ensure_prefix_permissions
    opened = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH

    def confined(path: Path) -> None:
        for folder in Path(path).resolve().parents:
            if any(folder == a or a in folder.parents for a in allowed):
                mode = folder.stat().st_mode
                if mode & opened != opened:
                    folder.chmod(mode | opened)
            elif not folder.stat().st_mode & stat.S_IXOTH:
                raise FolderAccessError(
                    f"the embedded PostgreSQL runs as system user 'pgserver' (this runs as root) and "
                    f"cannot enter {folder} (mode {stat.filemode(folder.stat().st_mode)}) on the way to "
                    f"{path}; its permissions are left alone. Allow others to enter it "
                    f"(`chmod o+x {folder}`), or set EVENTS_HOME to a folder every parent of which "
                    f"others may enter (data goes to $EVENTS_HOME/pg/data, now {data_dir}), or use a "
                    "PostgreSQL of your own (EVENTS_DB_URI and AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)"
                )

    server_module.ensure_prefix_permissions = confined
    try:
        yield
    finally:
        server_module.ensure_prefix_permissions = original


@dataclass
class S3Instance:
    """A running local S3 server (moto's standalone server).

    :param endpoint_url: ``http://127.0.0.1:PORT``.
    :param server: the moto server handle.
    """

    endpoint_url: str
    server: Any = field(repr=False)

    def stop(self) -> None:
        """Stop the server."""
        self.server.stop()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_s3(port: int = 0, *, setting: str = "EVENTS_S3_PORT") -> S3Instance:
    """Start moto's S3-compatible server on 127.0.0.1.

    moto's server thread dies silently when it cannot bind, and its ``start()``
    then waits forever; so the port is checked first and the start is bounded.

    :param port: TCP port; 0 picks a free one.
    :param setting: the environment variable that chose ``port``, for messages.
    :raises PortInUseError: ``port`` is taken (names it and ``setting``).
    :raises RuntimeError: the server did not listen within :data:`S3_START_TIMEOUT` seconds.
    """
    from moto.server import ThreadedMotoServer

    check_port_free(port, setting=setting, purpose="the local S3 server")
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port or free_port(), verbose=False)
    starter = threading.Thread(target=server.start, name="moto-start", daemon=True)
    starter.start()
    starter.join(S3_START_TIMEOUT)
    if starter.is_alive():
        raise RuntimeError(
            f"the local S3 server did not listen on {LOOPBACK}:{port or 'a free port'} within "
            f"{S3_START_TIMEOUT:.0f} s (another process may have taken the port): choose another "
            f"port with {setting}"
        )
    host, bound_port = server.get_host_and_port()
    endpoint = f"http://{host}:{bound_port}"
    log.info("S3 server running at %s", endpoint)
    return S3Instance(endpoint_url=endpoint, server=server)


def aws_connection_json(endpoint_url: str, *, local: bool = True, region: str | None = None) -> str:
    """The ``AIRFLOW_CONN_AWS_DEFAULT`` value (JSON) for an S3-compatible endpoint.

    :param endpoint_url: e.g. ``http://127.0.0.1:5055`` or a MinIO address.
    :param local: the endpoint is the local moto server: use the placeholder
        credentials. Otherwise the connection carries none, so the AWS hook uses
        the credential chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
        a profile, an instance role).
    :param region: the region (default :data:`LOCAL_REGION`, or ``AWS_DEFAULT_REGION``
        for a real endpoint).
    """
    conn: dict[str, Any] = {"conn_type": "aws"}
    if local:
        conn.update(login=LOCAL_AWS_KEY, password=LOCAL_AWS_SECRET)
    region = region or (LOCAL_REGION if local else os.environ.get("AWS_DEFAULT_REGION", LOCAL_REGION))
    conn["extra"] = {"endpoint_url": endpoint_url, "region_name": region}
    return json.dumps(conn)


def s3_client(endpoint_url: str, *, local: bool = True) -> Any:
    """A boto3 S3 client for ``endpoint_url``: placeholder credentials only for the local server.

    :param endpoint_url: the S3 endpoint.
    :param local: the endpoint is the local moto server (see :func:`aws_connection_json`).
    """
    import boto3

    if local:
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=LOCAL_AWS_KEY,
            aws_secret_access_key=LOCAL_AWS_SECRET,
            region_name=LOCAL_REGION,
        )
    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=os.environ.get("AWS_DEFAULT_REGION", LOCAL_REGION)
    )


def create_buckets(endpoint_url: str, buckets: list[str], *, local: bool = True) -> None:
    """Create each bucket unless it exists.

    :param endpoint_url: the S3 endpoint.
    :param buckets: bucket names.
    :param local: the endpoint is the local moto server (see :func:`s3_client`).
    :raises RuntimeError: a bucket exists but these credentials may not use it (names it).
    """
    from botocore.exceptions import ClientError

    s3 = s3_client(endpoint_url, local=local)
    for bucket in buckets:
        try:
            s3.head_bucket(Bucket=bucket)
            continue
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"403", "AccessDenied", "Forbidden"}:
                raise RuntimeError(
                    f"bucket {bucket!r} at {endpoint_url} exists but the credentials may not use it "
                    "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); choose other names with "
                    "AIRFLOW_VAR_EVENTS_LANDING_BUCKET / AIRFLOW_VAR_EVENTS_BACKUP_BUCKET"
                ) from exc
            if code not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        region = s3.meta.region_name
        if local or region == LOCAL_REGION:
            s3.create_bucket(Bucket=bucket)
        else:  # outside us-east-1, AWS wants the region named
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
