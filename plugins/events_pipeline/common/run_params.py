"""Values typed into a DAG's trigger form (Airflow Params), checked with errors that name the field.

Airflow validates each Param against its JSON schema in the form and at trigger
time; the rules that span fields (a range's order, its length) or need "now"
are checked here, at the start of the task, and fail the run at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from events_pipeline.common.errors import PipelineError


class ParamError(PipelineError, AirflowFailException):
    """A trigger-form value is invalid; the message names the field. Not retried."""


def optional_day(params: Mapping[str, Any] | None, name: str) -> date | None:
    """Return the form's ``name`` as a date (``YYYY-MM-DD``), or None when left empty.

    :param params: the run's params (``context["params"]``).
    :param name: the field name.
    :raises ParamError: the value is not a date, naming the field.
    """
    value = (params or {}).get(name)
    if value in (None, ""):
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ParamError(f"form field {name!r} = {value!r} is not a date (YYYY-MM-DD)") from exc


def optional_day_range(
    params: Mapping[str, Any] | None,
    first: str,
    last: str,
    *,
    max_days: int,
    today: date | None = None,
) -> tuple[date, date] | None:
    """Return the form's day range ``(first, last)`` (inclusive), or None when both are empty.

    :param params: the run's params (``context["params"]``).
    :param first: the field holding the first day.
    :param last: the field holding the last day (empty: the same as the first).
    :param max_days: the longest range accepted, in days.
    :param today: today's UTC date (default: now).
    :raises ParamError: naming the field: only the last day given, last before first,
        a day after today, or a range longer than ``max_days``.
    """
    first_day = optional_day(params, first)
    last_day = optional_day(params, last)
    if first_day is None:
        if last_day is not None:
            raise ParamError(f"form field {last!r} is set but {first!r} is empty: give the first day too")
        return None
    last_day = last_day or first_day
    today = today or datetime.now(UTC).date()
    if last_day < first_day:
        raise ParamError(f"form field {last!r} = {last_day} is before {first!r} = {first_day}")
    if last_day > today:
        raise ParamError(f"form field {last!r} = {last_day} is in the future (today is {today} UTC)")
    days = (last_day - first_day).days + 1
    if days > max_days:
        raise ParamError(
            f"form fields {first!r}..{last!r} span {days} days, more than {max_days}: split the range"
        )
    return first_day, last_day
