"""Interval arithmetic: whole UTC hours, day/month/year boundaries, labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from events_pipeline.common.intervals import HourInterval, IntervalError, floor_hour, hour_of, hours_between


def test_hour_of_a_data_interval():
    h = hour_of(datetime(2026, 11, 27, 3, tzinfo=UTC), datetime(2026, 11, 27, 4, tzinfo=UTC))
    assert h.start == datetime(2026, 11, 27, 3, tzinfo=UTC)
    assert h.end == datetime(2026, 11, 27, 4, tzinfo=UTC)
    assert h.partition_path == "dt=2026-11-27/hour=03"
    assert str(h) == "2026-11-27T03:00Z..2026-11-27T04:00Z"


@pytest.mark.parametrize(
    ("start", "path", "end"),
    [
        (
            datetime(2026, 11, 30, 23, tzinfo=UTC),
            "dt=2026-11-30/hour=23",
            datetime(2026, 12, 1, 0, tzinfo=UTC),
        ),
        (
            datetime(2026, 12, 31, 23, tzinfo=UTC),
            "dt=2026-12-31/hour=23",
            datetime(2027, 1, 1, 0, tzinfo=UTC),
        ),
        (
            datetime(2028, 2, 28, 23, tzinfo=UTC),
            "dt=2028-02-28/hour=23",
            datetime(2028, 2, 29, 0, tzinfo=UTC),
        ),
        (datetime(2027, 1, 1, 0, tzinfo=UTC), "dt=2027-01-01/hour=00", datetime(2027, 1, 1, 1, tzinfo=UTC)),
    ],
)
def test_day_month_year_boundaries(start, path, end):
    h = HourInterval(start)
    assert h.partition_path == path
    assert h.end == end
    assert h.contains(start) and not h.contains(end) and h.contains(end - timedelta(microseconds=1))


def test_other_zones_are_normalised_to_utc():
    cet = timezone(timedelta(hours=1))
    h = hour_of(datetime(2026, 11, 27, 4, tzinfo=cet), datetime(2026, 11, 27, 5, tzinfo=cet))
    assert h.start == datetime(2026, 11, 27, 3, tzinfo=UTC)
    assert h.partition_path == "dt=2026-11-27/hour=03"
    # naive means UTC
    assert HourInterval(datetime(2026, 11, 27, 3)).start.tzinfo == UTC


def test_pendulum_datetimes_from_the_context():
    import pendulum

    start = pendulum.datetime(2026, 3, 29, 1, tz="UTC")  # a DST day elsewhere: irrelevant in UTC
    h = hour_of(start, start.add(hours=1))
    assert h.partition_path == "dt=2026-03-29/hour=01"


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (None, None, "no data interval"),
        (datetime(2026, 1, 1, 3, tzinfo=UTC), datetime(2026, 1, 1, 3, tzinfo=UTC), "not one hour"),
        (datetime(2026, 1, 1, 3, tzinfo=UTC), datetime(2026, 1, 2, 3, tzinfo=UTC), "not one hour"),
        (
            datetime(2026, 1, 1, 3, 30, tzinfo=UTC),
            datetime(2026, 1, 1, 4, 30, tzinfo=UTC),
            "not on a UTC hour",
        ),
    ],
)
def test_rejects_intervals_that_are_not_one_whole_hour(start, end, message):
    with pytest.raises(IntervalError, match=message):
        hour_of(start, end)


def test_hours_between_and_floor():
    hours = list(
        hours_between(datetime(2026, 12, 31, 22, 15, tzinfo=UTC), datetime(2027, 1, 1, 1, tzinfo=UTC))
    )
    assert [h.partition_path for h in hours] == [
        "dt=2026-12-31/hour=22",
        "dt=2026-12-31/hour=23",
        "dt=2027-01-01/hour=00",
    ]
    assert floor_hour(datetime(2026, 1, 1, 5, 59, 59, 999999, tzinfo=UTC)) == datetime(
        2026, 1, 1, 5, tzinfo=UTC
    )
    assert sorted([hours[2], hours[0]]) == [hours[0], hours[2]]
