"""Exception types of the pipeline; each message names what is at fault."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException


class PipelineError(Exception):
    """Base class of every error raised by this package."""


class SettingError(PipelineError, AirflowFailException):
    """A connection or Variable is missing or invalid; retrying will not help.

    An ``AirflowFailException``: the task fails at once, naming the setting,
    instead of retrying for minutes before anyone hears of it.
    """


class ServiceUnreachableError(PipelineError):
    """PostgreSQL or S3 could not be reached with the configured connection."""
