"""events_health fails, naming the request, for an erasure request overdue or failed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from tests.conftest import task_states

from .conftest import add_client

CHECK = "check_erasure_requests"


def _run_health(run_dag, caplog) -> tuple[str, list[str]]:
    caplog.clear()
    dr = run_dag("events_health", logical_date=datetime.now(UTC))
    messages = [r.getMessage() for r in caplog.records if CHECK in r.getMessage()]
    return task_states(dr)[CHECK], messages


def test_an_overdue_or_failed_request_turns_events_health_red_naming_it(
    maint_db, partitions_back, s3, run_dag, caplog
):
    db = maint_db
    caplog.set_level(logging.INFO)
    add_client(db, "acme")
    rid = db.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id, requested_at, failures, next_attempt_at) "
        "VALUES ('acme', 'bob', now() - interval '6 days', 3, now() + interval '4 hours') "
        "RETURNING request_id"
    ).fetchone()[0]

    state, _ = _run_health(run_dag, caplog)
    assert state == "success"  # open for 6 days: inside the 7-day deadline

    db.execute("UPDATE gdpr_erasure_requests SET requested_at = now() - interval '8 days'")
    state, messages = _run_health(run_dag, caplog)
    assert state == "failed"
    line = next(m for m in messages if m.startswith(f"FAILED dag=events_health task={CHECK} "))
    assert f"error=AirflowFailException: {CHECK} [runbook: docs/runbook.md#{CHECK}]: " in line
    assert "not done within" in line
    assert f"request {rid} (client acme, requested " in line and "8.0 days ago" in line
    assert "events_erasure_deadline_days = 7" in line and "3 failure(s)" in line
    assert "bob" not in line  # the message never names the visitor

    other = db.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id, status, failures, error) "
        "VALUES ('acme', 'amy', 'failed', 12, 'erasure: client acme: s3://test-backup/acme/x: AccessDenied') "
        "RETURNING request_id"
    ).fetchone()[0]
    db.execute(
        "UPDATE gdpr_erasure_requests SET status = 'done', visitor_id = NULL, visitor_digest = '\\x00' "
        "WHERE request_id = %s",
        (rid,),
    )
    state, messages = _run_health(run_dag, caplog)
    assert state == "failed"
    line = next(m for m in messages if m.startswith(f"FAILED dag=events_health task={CHECK} "))
    assert f"request {other} (client acme" in line and "failed after 12 failure(s)" in line
    assert "AccessDenied" in line and f"request {rid} " not in line
