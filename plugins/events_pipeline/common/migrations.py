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
from events_pipeline.common.errors import PermanentError, PipelineError
from events_pipeline.common.settings import MIGRATIONS_DIR

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
LOCK_NAME = "events_pipeline.migrations"

#: Whole-file sha256 of migrations as first released, when checksums covered comments
#: too. A database that recorded one of these is accepted if the file's statements are
#: unchanged (its checksum is then rewritten to the statement checksum).
_LEGACY_FILE_CHECKSUMS = {
    "0001_core_schema": "8b3e7352f0afb15171f8586da565d3bbfa9e32f861996fb137ab476e8ff99123",
    "0002_raw_event_data_json": "a7b836fb298e8ffbb39215563074e97f2f9615a8f751fc8736b9e76974b5b538",
    "0010_ingest_registry": "a41dfd53a0e958badaf64110928277336bf9a2ed3e6f61f98b2f11f40bce0a9c",
    "0030_maintenance": "88b09d43e0410297286f496aba1619c6eaaf2f47b4286dd78342cd8275e5dbb6",
    "0040_health_indexes": "afb319f58e2f95750091a6dfe6bc69e8758d4ab6bf68a44a519d99cb3a928bc3",
}
#: The statements of those files as first released (sha256 of :func:`statements_only`),
#: so a legacy checksum is only accepted for a file whose statements did not change.
_LEGACY_STATEMENT_CHECKSUMS = {
    "0001_core_schema": "e2d26f348d556bf742a4578ea0fca15250a92b6e9e98ff715e7955f3a1c8701c",
    "0002_raw_event_data_json": "d16b6d6fb1506ee04c858ff01c2b1b87fd934a01a28075f24520769c54e5c482",
    "0010_ingest_registry": "929f7b1728295191bc88fb7947041a03df048180c61677c1a417caed4ef4866d",
    "0030_maintenance": "b082368f85bec51912dc9edc34e60a0ed5cdb257d6db66ff1d86ed876d9e2bbe",
    "0040_health_indexes": "aa2bc87053ff0dc2fddf947276badd1fd666e1c6aa49b3da9b790bc75675ddc2",
}


def statements_only(text: str) -> str:
    """Return the SQL of ``text`` without ``--`` comments and with whitespace collapsed.

    Quoted strings (``'...'``, ``"..."``) are kept verbatim, so a ``--`` inside one
    is not taken for a comment.

    :param text: a migration file's text.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            end = i + 1
            while end < n:
                if text[end] == ch:
                    if end + 1 < n and text[end + 1] == ch:  # doubled quote inside the string
                        end += 2
                        continue
                    break
                end += 1
            out.append(text[i : end + 1])
            i = end + 1
        elif text.startswith("--", i):
            newline = text.find("\n", i)
            i = n if newline == -1 else newline
        else:
            out.append(ch)
            i += 1
    return " ".join("".join(out).split())


def statement_checksum(text: str) -> str:
    """Return the checksum of a migration: sha256 of :func:`statements_only` of its text.

    Comments may be corrected after a migration was applied; its statements may not.

    :param text: a migration file's text.
    """
    return hashlib.sha256(statements_only(text).encode("utf-8")).hexdigest()


class MigrationError(PermanentError):
    """A migration file is malformed, was edited after being applied, or failed.

    Not retried (a :class:`PermanentError`, so an ``AirflowFailException``): the
    same files fail the same way on every try, and the message already names
    the file and PostgreSQL's error. An unreachable database is a
    ``ServiceUnreachableError`` instead, which is retried.
    """


@dataclass(frozen=True)
class Migration:
    """One migration file.

    :param version: the file name without ``.sql`` (``0001_core_schema``).
    :param path: where the file is.
    :param checksum: :func:`statement_checksum` of its text.
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
        checksum = statement_checksum(path.read_text(encoding="utf-8"))
        found.append(Migration(path.stem, path, checksum))
    return found


def _is_legacy(migration: Migration, recorded: str) -> bool:
    """Whether ``recorded`` is the whole-file checksum of ``migration`` as first released,
    with the file's statements unchanged since."""
    return (
        _LEGACY_FILE_CHECKSUMS.get(migration.version) == recorded
        and _LEGACY_STATEMENT_CHECKSUMS.get(migration.version) == migration.checksum
    )


def apply_migrations(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; return the versions applied (empty when none).

    :param conn: an open psycopg connection (its autocommit mode is changed).
    :param directory: folder of migration files.
    :raises MigrationError: a file was edited after being applied, or failed to
        apply (naming the file and PostgreSQL's message); not retried.
    :raises PipelineError: the connection was lost or a lock wait or statement
        was cancelled while applying a file (retried).
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
                if _is_legacy(migration, applied[migration.version]):
                    conn.execute(
                        "UPDATE schema_migrations SET checksum = %s WHERE version = %s",
                        (migration.checksum, migration.version),
                    )
                    log.info("migration %s: checksum recorded as statements only", migration.path.name)
                elif applied[migration.version] != migration.checksum:
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
            except psycopg.OperationalError as exc:  # connection lost, lock timeout, cancel: may pass later
                raise PipelineError(
                    f"migration {migration.path.name} was interrupted and rolled back: {exc}"
                ) from exc
            except psycopg.Error as exc:
                raise MigrationError(
                    f"migration {migration.path.name} failed and was rolled back (earlier files stay "
                    f"applied; fix its SQL, see docs/runbook.md#events_db_migrate): {exc}"
                ) from exc
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
