"""events_billing's trigger form: recompute a date range, or fail at once naming the field."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from .conftest import add_client, day_start


def _billed_days(db):
    return [r[0] for r in db.execute("SELECT day FROM billing_runs ORDER BY day")]


def test_form_range_recomputes_exactly_those_days(maint_db, partitions_back, run_dag):
    db, today = maint_db, partitions_back
    add_client(db, "acme")
    first, last = today - timedelta(days=20), today - timedelta(days=18)

    dr = run_dag(
        "events_billing",
        logical_date=day_start(today),
        run_conf={"first_day": first.isoformat(), "last_day": last.isoformat()},
    )

    assert dr.state == "success"
    assert _billed_days(db) == [first, first + timedelta(days=1), last]
    # again: the same days, recomputed in place
    run_dag("events_billing", logical_date=day_start(today), run_conf={"first_day": first.isoformat()})
    assert _billed_days(db) == [first, first + timedelta(days=1), last]


def test_empty_form_bills_the_run_interval_as_a_scheduled_run(maint_db, partitions_back, run_dag):
    db, today = maint_db, partitions_back
    add_client(db, "acme")

    dr = run_dag("events_billing", logical_date=day_start(today), run_conf={"first_day": None})

    assert dr.state == "success"
    yesterday = today - timedelta(days=1)
    assert _billed_days(db) == [yesterday - timedelta(days=2), yesterday - timedelta(days=1), yesterday]


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {"first_day": "2026-03-10", "last_day": "2026-03-01"},
            "form field 'last_day' = 2026-03-01 is before",
        ),
        ({"last_day": "2026-03-01"}, "form field 'last_day' is set but 'first_day' is empty"),
        ({"first_day": "2024-01-01", "last_day": "2026-01-01"}, "span 732 days, more than 400"),
        ({"first_day": "2999-01-01"}, "form field 'last_day' = 2999-01-01 is in the future"),
    ],
)
def test_a_wrong_range_fails_the_run_at_once_naming_the_field(
    maint_db, partitions_back, run_dag, caplog, conf, message
):
    db, today = maint_db, partitions_back
    caplog.set_level(logging.ERROR)

    dr = run_dag("events_billing", logical_date=day_start(today), run_conf=conf)

    assert dr.state == "failed"
    (ti,) = dr.get_task_instances()
    assert ti.try_number == 1  # not retried: no retry can fix a form value
    assert any(message in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert _billed_days(db) == []


def test_a_value_that_is_not_a_date_is_refused_before_the_run(maint_db, partitions_back, run_dag):
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="first_day"):
        run_dag(
            "events_billing", logical_date=day_start(partitions_back), run_conf={"first_day": "2026-13-01"}
        )
