"""events_gdpr_erasure's trigger form: file a request and carry it out, or fail at once naming the field."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import task_states

from .conftest import add_client, count, event, insert_events


@pytest.fixture
def clients(maint_db, partitions_back, s3):
    add_client(maint_db, "acme", domains=["acme.com"])
    add_client(maint_db, "globex", domains=["globex.com"])
    insert_events(maint_db, [event(datetime.now(UTC) - timedelta(hours=1), visitor_id="bob")])
    return maint_db


def _requests(db):
    return db.execute(
        "SELECT client_id, status, requested_by, reference, filed_by_run_id IS NOT NULL "
        "FROM gdpr_erasure_requests"
    ).fetchall()


def test_a_valid_form_files_the_request_and_the_run_carries_it_out(clients, run_dag):
    db = clients
    dr = run_dag(
        "events_gdpr_erasure",
        logical_date=datetime.now(UTC),
        run_conf={"client_id": "acme", "visitor_id": " bob ", "requested_by": "Bob Visitor", "reference": ""},
    )
    assert dr.state == "success", task_states(dr)
    assert _requests(db) == [("acme", "done", "Bob Visitor", None, True)]
    assert count(db, "visitor_id = 'bob'") == 0


def test_filing_is_once_per_run(clients):
    from events_pipeline.common.db import connect
    from events_pipeline.erasure.intake import file_request, read_form

    form = read_form({"client_id": "acme", "visitor_id": "bob", "requested_by": "Bob"})
    with connect(autocommit=True) as conn:
        first = file_request(conn, form, run_id="manual__1")
        again = file_request(conn, form, run_id="manual__1")  # the task's retry
        other = file_request(conn, form, run_id="manual__2")
    assert first == again != other
    assert clients.execute("SELECT count(*) FROM gdpr_erasure_requests").fetchone()[0] == 2


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {"client_id": "acmee", "visitor_id": "bob", "requested_by": "Bob"},
            "form field 'client_id' = 'acmee' is not a client (no row in clients); did you mean 'acme'?",
        ),
        (
            {"client_id": "acme", "visitor_id": None, "requested_by": "Bob"},
            "form field 'visitor_id' is empty",
        ),
        (
            {"client_id": "acme", "visitor_id": "  ", "requested_by": "Bob"},
            "form field 'visitor_id' is empty",
        ),
        ({"visitor_id": "bob", "requested_by": "Bob"}, "form field 'client_id' is empty"),
        ({"client_id": "acme", "visitor_id": "bob"}, "form field 'requested_by' is empty"),
    ],
)
def test_a_wrong_form_fails_the_run_at_once_naming_the_field(clients, run_dag, caplog, conf, message):
    db = clients
    caplog.set_level(logging.ERROR)

    dr = run_dag("events_gdpr_erasure", logical_date=datetime.now(UTC), run_conf=conf)

    assert dr.state == "failed"
    states = task_states(dr)
    assert states["file_request"] == "failed" and states["process_erasure_requests"] == "upstream_failed"
    (ti,) = [ti for ti in dr.get_task_instances() if ti.task_id == "file_request"]
    assert ti.try_number == 1  # not retried: no retry can fix a form value
    assert any(message in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert _requests(db) == []  # nothing filed, nothing "done with 0 rows"
    assert count(db, "visitor_id = 'bob'") == 1


def test_a_client_id_that_is_not_an_id_is_refused_before_the_run(clients, run_dag):
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="client_id"):
        run_dag(
            "events_gdpr_erasure",
            logical_date=datetime.now(UTC),
            run_conf={"client_id": "Acme Corp", "visitor_id": "bob", "requested_by": "Bob"},
        )


def test_an_empty_form_carries_out_the_pending_requests(clients, run_dag):
    db = clients
    db.execute("INSERT INTO gdpr_erasure_requests (client_id, visitor_id) VALUES ('acme', 'bob')")

    dr = run_dag("events_gdpr_erasure", logical_date=datetime.now(UTC))

    assert dr.state == "success", task_states(dr)
    assert [r[:2] for r in _requests(db)] == [("acme", "done")]
    assert count(db, "visitor_id = 'bob'") == 0
