"""What bounds one client's export, so a slow or stuck client never holds the others back.

- **S3 calls** time out: every S3 client of an export is built with a connect and a
  read timeout and a bounded number of attempts (Variables below). A client's own
  connection (``clients.export_conn_id``) may tighten or loosen them for that client
  alone with ``config_kwargs`` in its extra (``{"config_kwargs": {"read_timeout": 20,
  "retries": {"total_max_attempts": 2}}}``): the connection's values win. An endpoint that
  accepts connections and never answers therefore fails one call after
  ``attempts x read timeout`` seconds, naming the client, bucket and key.
- **Another export of the same client** (another hour's run) is waited for at most
  ``events_export_client_lock_wait_seconds``; then this client fails (and is retried
  later) instead of holding its group.
- **Order per client** while several hours run at once: a run takes the client's older
  stragglers (``claim = through``) only when no earlier hour of the client within
  ``events_export_order_window_hours`` is still to come; otherwise it takes its own
  hour's rows only (``within``) and the older ones wait for the next run.

The values are read once per task (:func:`read_limits`) and handed to every client it exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events_pipeline.common.s3 import AWS_CONN_HOW
from events_pipeline.common.settings import Setting, get_setting, register, require_connection

S3_CONNECT_TIMEOUT = register(
    Setting(
        "events_export_s3_connect_timeout_seconds",
        10,
        "export: seconds to open a connection to an S3 endpoint before the call fails or is retried",
    )
)
S3_READ_TIMEOUT = register(
    Setting(
        "events_export_s3_read_timeout_seconds",
        60,
        "export: seconds an S3 endpoint may stay silent during a call before it fails or is retried",
    )
)
S3_MAX_ATTEMPTS = register(
    Setting(
        "events_export_s3_max_attempts",
        3,
        "export: attempts of one S3 call (the first included) before the client's export fails",
    )
)
CLIENT_LOCK_WAIT = register(
    Setting(
        "events_export_client_lock_wait_seconds",
        30,
        "export: seconds to wait for another run's export of the same client before failing this "
        "client (retried later) instead of holding its group",
    )
)
ORDER_WINDOW_HOURS = register(
    Setting(
        "events_export_order_window_hours",
        6,
        "export: hours before an exported hour in which a missing run of the client (an earlier hour "
        "still to come) makes the run take its own hour's rows only",
    )
)


@dataclass(frozen=True)
class ExportLimits:
    """The bounds of one client's export (see the module docstring).

    :param s3_connect_timeout: seconds to connect to an S3 endpoint.
    :param s3_read_timeout: seconds an S3 endpoint may stay silent within a call.
    :param s3_max_attempts: attempts of one S3 call, the first included.
    :param lock_wait_seconds: the longest wait for another export of the same client.
    :param order_window_hours: see :data:`ORDER_WINDOW_HOURS`.
    """

    s3_connect_timeout: float = 10
    s3_read_timeout: float = 60
    s3_max_attempts: int = 3
    lock_wait_seconds: float = 30
    order_window_hours: int = 6

    def __post_init__(self) -> None:
        for name in ("s3_connect_timeout", "s3_read_timeout", "lock_wait_seconds"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"export limit {name} must be positive, got {getattr(self, name)!r}")
        if int(self.s3_max_attempts) < 1 or int(self.order_window_hours) < 1:
            raise ValueError("export limits s3_max_attempts and order_window_hours must be at least 1")

    @property
    def worst_s3_call_seconds(self) -> float:
        """How long one S3 call can take at most against an endpoint that never answers."""
        return self.s3_max_attempts * (self.s3_connect_timeout + self.s3_read_timeout)

    def botocore_config(self) -> Any:
        """Return the ``botocore.config.Config`` of these timeouts and attempts."""
        from botocore.config import Config

        return Config(
            connect_timeout=self.s3_connect_timeout,
            read_timeout=self.s3_read_timeout,
            # total_max_attempts counts the first try (botocore's max_attempts counts retries only)
            retries={"total_max_attempts": int(self.s3_max_attempts), "mode": "standard"},
        )


def read_limits() -> ExportLimits:
    """Return the limits from the Airflow Variables (or their defaults).

    :raises SettingError: a Variable holds a value of the wrong type (names it).
    :raises ValueError: a value out of range (names the limit).
    """
    return ExportLimits(
        s3_connect_timeout=float(get_setting(S3_CONNECT_TIMEOUT.name)),
        s3_read_timeout=float(get_setting(S3_READ_TIMEOUT.name)),
        s3_max_attempts=int(get_setting(S3_MAX_ATTEMPTS.name)),
        lock_wait_seconds=float(get_setting(CLIENT_LOCK_WAIT.name)),
        order_window_hours=int(get_setting(ORDER_WINDOW_HOURS.name)),
    )


def bounded_s3_client(conn_id: str, limits: ExportLimits) -> Any:
    """Return a boto3 S3 client of the Airflow connection ``conn_id`` whose calls are bounded.

    The connection's own ``config_kwargs`` (extra) override :meth:`ExportLimits.botocore_config`
    value by value, so one client's connection can set its own timeouts and attempts.

    :param conn_id: the Airflow AWS connection.
    :param limits: the default timeouts and attempts.
    :raises SettingError: the connection is not defined (names it).
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    require_connection(conn_id, AWS_CONN_HOW)
    own = S3Hook(aws_conn_id=conn_id).config  # from the connection's config_kwargs, or None
    config = limits.botocore_config()
    if own is not None:
        config = config.merge(own)
    return S3Hook(aws_conn_id=conn_id, config=config).get_conn()


class S3Clients:
    """Bounded S3 clients by connection id, built once per task and shared by its clients' exports.

    Building a client (connection lookup, boto3 session) costs tens of milliseconds: a
    task exporting hundreds of clients builds one per connection, not per client.

    :param limits: the timeouts and attempts of every client built.
    """

    def __init__(self, limits: ExportLimits) -> None:
        self.limits = limits
        self._clients: dict[str, Any] = {}

    def get(self, conn_id: str) -> Any:
        """Return the S3 client of the Airflow connection ``conn_id`` (built on first use).

        :param conn_id: the Airflow AWS connection.
        :raises SettingError: the connection is not defined (names it).
        """
        client = self._clients.get(conn_id)
        if client is None:
            client = self._clients[conn_id] = bounded_s3_client(conn_id, self.limits)
        return client
