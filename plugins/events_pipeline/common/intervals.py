"""Interval arithmetic for hourly exports: UTC hours, their bounds and labels.

Everything is UTC (no DST), but day, month and year boundaries still matter:
the hour ``23:00-24:00`` of 2026-12-31 belongs to ``dt=2026-12-31/hour=23``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)


class IntervalError(ValueError):
    """An interval is not one whole UTC hour (names the bounds)."""


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime.

    :param value: an aware datetime (any zone, incl. pendulum), or a naive one taken as UTC.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def floor_hour(value: datetime) -> datetime:
    """Return the start of the UTC hour holding ``value``.

    :param value: any datetime (naive means UTC).
    """
    return as_utc(value).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, order=True)
class HourInterval:
    """One UTC hour ``[start, end)`` an export covers.

    :param start: the first instant (aware UTC, on the hour).
    """

    start: datetime

    def __post_init__(self) -> None:
        start = as_utc(self.start)
        if start != floor_hour(start):
            raise IntervalError(f"export interval start {start.isoformat()} is not on a UTC hour")
        object.__setattr__(self, "start", start)

    @property
    def end(self) -> datetime:
        """The first instant after the hour."""
        return self.start + HOUR

    @property
    def dt(self) -> str:
        """The ``YYYY-MM-DD`` day label of the hour."""
        return f"{self.start:%Y-%m-%d}"

    @property
    def hour(self) -> str:
        """The two-digit ``HH`` hour label."""
        return f"{self.start:%H}"

    @property
    def partition_path(self) -> str:
        """The ``dt=YYYY-MM-DD/hour=HH`` folder of the hour."""
        return f"dt={self.dt}/hour={self.hour}"

    def contains(self, when: datetime) -> bool:
        """Tell whether ``when`` falls inside ``[start, end)``.

        :param when: an instant (naive means UTC).
        """
        return self.start <= as_utc(when) < self.end

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%dT%H:%M}Z..{self.end:%Y-%m-%dT%H:%M}Z"


def hour_of(start: datetime, end: datetime) -> HourInterval:
    """Return the hour a data interval ``[start, end)`` covers, checking it is exactly one hour.

    :param start: ``data_interval_start`` of the run.
    :param end: ``data_interval_end`` of the run.
    :raises IntervalError: the interval is missing, not on the hour, or not one hour long.
    """
    if start is None or end is None:
        raise IntervalError(
            "the run has no data interval (a trigger with logical_date=null?): "
            "trigger with a logical date so the run covers one UTC hour"
        )
    s, e = as_utc(start), as_utc(end)
    if e - s != HOUR:
        raise IntervalError(
            f"data interval {s.isoformat()}..{e.isoformat()} is not one hour long "
            "(events_export needs CronDataIntervalTimetable('0 * * * *'))"
        )
    return HourInterval(s)


def hours_between(start: datetime, end: datetime) -> Iterator[HourInterval]:
    """Yield every UTC hour overlapping ``[start, end)``, in order.

    :param start: first instant (floored to its hour).
    :param end: end instant (exclusive).
    """
    current = floor_hour(start)
    stop = as_utc(end)
    while current < stop:
        yield HourInterval(current)
        current += HOUR
