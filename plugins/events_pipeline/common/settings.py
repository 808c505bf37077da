"""Names and defaults of every setting the pipeline reads.

Settings are Airflow Variables (so ``AIRFLOW_VAR_<NAME>`` works) and Airflow
connections. They are read lazily, inside tasks, never at DAG-parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from events_pipeline.common.errors import SettingError

#: Connection id of the events PostgreSQL database.
EVENTS_DB_CONN_ID = "events_db"
#: Default connection id for S3 (landing, backup and clients without their own).
AWS_CONN_ID = "aws_default"

#: Variable names (contract §4 (docs/contract.md)) and the thresholds of the health checks.
VAR_LANDING_BUCKET = "events_landing_bucket"
VAR_BACKUP_BUCKET = "events_backup_bucket"
VAR_IP_HASH_SECRET = "events_ip_hash_secret"  # noqa: S105 - a Variable name, not a secret

#: Root of the SQL files (``include/sql``), found relative to this package so it
#: works from the repo, from tests and inside the Docker image alike.
SQL_ROOT = Path(__file__).resolve().parents[3] / "include" / "sql"
MIGRATIONS_DIR = SQL_ROOT / "migrations"


@dataclass(frozen=True)
class Setting:
    """One Airflow Variable with its default and meaning.

    :param name: the Variable key (``AIRFLOW_VAR_<NAME upper>`` in the environment).
    :param default: value used when the Variable is not set; ``None`` means required.
    :param help: one line for docs and error messages.
    """

    name: str
    default: Any
    help: str


#: Every Variable the pipeline reads, in one place (docs are generated from it).
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(VAR_LANDING_BUCKET, None, "S3 bucket the collector writes landing files to"),
        Setting(VAR_BACKUP_BUCKET, None, "S3 bucket receiving a copy of every client export"),
        Setting(
            VAR_IP_HASH_SECRET,
            None,
            "secret key for keyed IP pseudonyms of GDPR clients (masked in logs)",
        ),
    )
}


def register(setting: Setting) -> Setting:
    """Add a setting to :data:`SETTINGS` (used by modules that own thresholds).

    :param setting: the setting to register.
    :return: the same setting, so modules can keep a reference.
    """
    SETTINGS[setting.name] = setting
    return setting


def missing_connection(conn_id: str, how: str) -> SettingError:
    """Return the error for an Airflow connection that is not defined.

    A :class:`SettingError` (an ``AirflowFailException``): the task fails on its
    first try, naming the connection and how to create it.

    :param conn_id: the connection id.
    :param how: what the value looks like, e.g. ``"a postgres:// URI"``.
    """
    return SettingError(
        f"Airflow connection {conn_id!r} is not defined: create it (Admin > Connections) "
        f"or set AIRFLOW_CONN_{conn_id.upper()} to {how}"
    )


def require_connection(conn_id: str, how: str) -> Any:
    """Return the Airflow connection ``conn_id``, failing at once when it is not defined.

    Use it before a hook that would otherwise fall back silently (the AWS hooks
    switch to the default credential chain without endpoint when their
    connection is missing) or fail with an error Airflow retries.

    :param conn_id: the connection id.
    :param how: what the value looks like, for the message (see :func:`missing_connection`).
    :raises SettingError: the connection is not defined.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise missing_connection(conn_id, how) from exc


def get_setting(name: str, *, required: bool | None = None) -> Any:
    """Read an Airflow Variable by name, falling back to its registered default.

    :param name: a key of :data:`SETTINGS`.
    :param required: force (or waive) the "must be set" rule; by default a
        setting whose default is ``None`` is required.
    :raises SettingError: the Variable is required and not set, naming it and
        the environment variable that would set it.
    """
    from airflow.sdk import Variable

    setting = SETTINGS.get(name)
    default = setting.default if setting else None
    value = Variable.get(name, default=None)
    if value is None or value == "":
        must = required if required is not None else default is None
        if must:
            hint = setting.help if setting else "pipeline setting"
            raise SettingError(
                f"Airflow Variable {name!r} is not set ({hint}); set it in the UI "
                f"(Admin > Variables) or as environment variable AIRFLOW_VAR_{name.upper()}"
            )
        return default
    if default is not None and not isinstance(default, str):
        try:
            return type(default)(value)
        except (TypeError, ValueError) as exc:
            raise SettingError(
                f"Airflow Variable {name!r} = {value!r} is not a valid "
                f"{type(default).__name__} ({setting.help if setting else ''})"
            ) from exc
    return value
