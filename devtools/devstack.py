"""The local stack for development and tests: embedded PostgreSQL and an S3 server.

Used by ``scripts/run_local.py`` (the README's run command) and by the test
session fixtures. Production deployments point the ``events_db`` and
``aws_default`` connections at real services instead and never import this.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
for _noisy in ("pgserver", "werkzeug"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

#: Credentials the local S3 server accepts (any non-empty pair works with moto).
LOCAL_AWS_KEY = "local-access-key"
LOCAL_AWS_SECRET = "local-secret-key"  # noqa: S105 - a placeholder for the local server
LOCAL_REGION = "us-east-1"


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


def start_postgres(data_dir: Path, *, keep_running: bool = False) -> PostgresInstance:
    """Start (or reuse) an embedded PostgreSQL whose data lives in ``data_dir``.

    :param data_dir: PGDATA folder; created and initialised when missing. As
        root, pgserver opens every parent folder to others, so use a dedicated one.
    :param keep_running: leave the server running when this process exits.
    """
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode=None if keep_running else "stop")
    uri = server.get_uri()
    query = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)
    socket_dir = query.get("host", [str(data_dir)])[0]
    log.info("PostgreSQL running, data in %s, socket in %s", data_dir, socket_dir)
    return PostgresInstance(data_dir=data_dir, socket_dir=socket_dir, server=server)


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


def start_s3(port: int = 0) -> S3Instance:
    """Start moto's S3-compatible server on 127.0.0.1.

    :param port: TCP port; 0 picks a free one.
    """
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port or free_port(), verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    endpoint = f"http://{host}:{bound_port}"
    log.info("S3 server running at %s", endpoint)
    return S3Instance(endpoint_url=endpoint, server=server)


def aws_connection_json(endpoint_url: str) -> str:
    """The ``AIRFLOW_CONN_AWS_DEFAULT`` value (JSON) for an S3-compatible endpoint.

    :param endpoint_url: e.g. ``http://127.0.0.1:5055`` or a MinIO address.
    """
    return json.dumps(
        {
            "conn_type": "aws",
            "login": LOCAL_AWS_KEY,
            "password": LOCAL_AWS_SECRET,
            "extra": {"endpoint_url": endpoint_url, "region_name": LOCAL_REGION},
        }
    )


def create_buckets(endpoint_url: str, buckets: list[str]) -> None:
    """Create each bucket unless it exists.

    :param endpoint_url: the S3 endpoint.
    :param buckets: bucket names.
    """
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=LOCAL_AWS_KEY,
        aws_secret_access_key=LOCAL_AWS_SECRET,
        region_name=LOCAL_REGION,
    )
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in buckets:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
