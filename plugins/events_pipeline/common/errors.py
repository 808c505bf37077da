"""Exception types of the pipeline; each message names what is at fault."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error raised by this package."""


class SettingError(PipelineError):
    """A connection or Variable is missing or invalid; retrying will not help."""


class ServiceUnreachableError(PipelineError):
    """PostgreSQL or S3 could not be reached with the configured connection."""
