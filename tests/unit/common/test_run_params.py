"""Trigger-form values: days and day ranges, with errors that name the field."""

from __future__ import annotations

from datetime import date

import pytest

from events_pipeline.common.run_params import ParamError, optional_day, optional_day_range

TODAY = date(2026, 12, 2)


def test_optional_day_reads_iso_dates_and_empty_values():
    assert optional_day({"d": "2026-11-30"}, "d") == date(2026, 11, 30)
    assert optional_day({"d": date(2026, 11, 30)}, "d") == date(2026, 11, 30)
    assert optional_day({"d": ""}, "d") is None
    assert optional_day({}, "d") is None
    assert optional_day(None, "d") is None
    with pytest.raises(ParamError, match="form field 'd' = '30/11/2026' is not a date"):
        optional_day({"d": "30/11/2026"}, "d")


def test_a_range_defaults_its_last_day_to_the_first():
    params = {"a": "2026-11-01"}
    assert optional_day_range(params, "a", "b", max_days=10, today=TODAY) == (date(2026, 11, 1),) * 2
    assert optional_day_range({}, "a", "b", max_days=10, today=TODAY) is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"b": "2026-11-01"}, "'b' is set but 'a' is empty"),
        ({"a": "2026-11-02", "b": "2026-11-01"}, "'b' = 2026-11-01 is before 'a' = 2026-11-02"),
        ({"a": "2026-12-01", "b": "2026-12-03"}, "'b' = 2026-12-03 is in the future"),
        ({"a": "2026-11-01", "b": "2026-11-11"}, "span 11 days, more than 10"),
    ],
)
def test_a_wrong_range_names_the_field(params, message):
    with pytest.raises(ParamError, match=message):
        optional_day_range(params, "a", "b", max_days=10, today=TODAY)


def test_a_param_error_is_not_retried():
    from airflow.sdk.exceptions import AirflowFailException

    assert issubclass(ParamError, AirflowFailException)
