"""Ordered, idempotent schema migrations from ``include/sql/migrations``.

Each ``NNNN_name.sql`` file is applied once, in file-name order, in its own
transaction, under a session advisory lock (two concurrent runners serialize
instead of racing on ``CREATE TABLE IF NOT EXISTS``). Applied files are
recorded with a checksum in ``schema_migrations``; editing an applied file is
an error, because the database would no longer match the repo.

Command line (the documented way to migrate without Airflow)::

    .venv/bin/python -m events_pipeline.common.migrations --dsn postgresql://...
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from events_pipeline.common.db import advisory_lock
from events_pipeline.common.errors import PipelineError
from events_pipeline.common.settings import MIGRATIONS_DIR

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
LOCK_NAME = "events_pipeline.migrations"


class MigrationError(PipelineError):
    """A migration file is malformed, was edited after being applied, or failed."""


@dataclass(frozen=True)
class Migration:
    """One migration file.

    :param version: the file name without ``.sql`` (``0001_core_schema``).
    :param path: where the file is.
    :param checksum: sha256 of its text.
    """

    version: str
    path: Path
    checksum: str

    @property
    def sql(self) -> str:
        """The file's SQL text."""
        return self.path.read_text(encoding="utf-8")


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """List the migration files of ``directory`` in the order they apply.

    :param directory: folder holding ``NNNN_name.sql`` files.
    :raises MigrationError: a ``.sql`` file is misnamed or two share a number.
    """
    found: list[Migration] = []
    numbers: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path} must be named NNNN_lower_snake.sql")
        number = match.group(1)
        if number in numbers:
            raise MigrationError(f"migrations {numbers[number]} and {path.name} share number {number}")
        numbers[number] = path.name
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        found.append(Migration(path.stem, path, checksum))
    return found


def apply_migrations(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; return the versions applied (empty when none).

    :param conn: an open psycopg connection (its autocommit mode is changed).
    :param directory: folder of migration files.
    :raises MigrationError: a file was edited after being applied, or failed to
        apply (naming the file and PostgreSQL's message).
    """
    import psycopg

    migrations = discover(directory)
    conn.autocommit = True
    with advisory_lock(conn, LOCK_NAME):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.path.name} was edited after it was applied "
                        f"(checksum {applied[migration.version][:12]} in schema_migrations, "
                        f"{migration.checksum[:12]} on disk): add a new migration instead"
                    )
                continue
            log.info("applying migration %s", migration.path.name)
            try:
                with conn.transaction():
                    conn.execute(migration.sql.encode("utf-8"))
                    conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                        (migration.version, migration.checksum),
                    )
            except psycopg.Error as exc:
                raise MigrationError(f"migration {migration.path.name} failed: {exc}") from exc
            done.append(migration.version)
        log.info(
            "migrations: %d applied now, %d already applied, %d on disk",
            len(done),
            len(migrations) - len(done),
            len(migrations),
        )
        return done


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: apply migrations, then make sure partitions exist around today.

    :param argv: arguments (default ``sys.argv[1:]``): ``--dsn`` or ``--conn-id``.
    :return: the process exit code.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dsn", help="libpq connection string or postgresql:// URI")
    group.add_argument("--conn-id", default="events_db", help="Airflow connection id (default events_db)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from events_pipeline.common.partitions import ensure_partitions_around

    if args.dsn:
        import psycopg

        with psycopg.connect(args.dsn) as conn:
            applied = apply_migrations(conn)
            created = ensure_partitions_around(conn)
    else:
        from events_pipeline.common.db import connect

        with connect(args.conn_id) as conn:
            applied = apply_migrations(conn)
            created = ensure_partitions_around(conn)
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    print(f"created {len(created)} partition(s) of events_log: {', '.join(created) or 'none missing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
