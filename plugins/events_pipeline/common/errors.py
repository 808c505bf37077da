"""Exception types of the pipeline; each message names what is at fault."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException


class PipelineError(Exception):
    """Base class of every error raised by this package."""


class PermanentError(PipelineError, AirflowFailException):
    """Retrying cannot help: the task fails on its first try, the message naming the cause.

    An ``AirflowFailException``, so Airflow skips the task's retries.
    """


class SettingError(PermanentError):
    """A connection or Variable is missing or invalid; retrying will not help.

    An ``AirflowFailException``: the task fails at once, naming the setting,
    instead of retrying for minutes before anyone hears of it.
    """


class ServiceUnreachableError(PipelineError):
    """PostgreSQL or S3 could not be reached with the configured connection."""
