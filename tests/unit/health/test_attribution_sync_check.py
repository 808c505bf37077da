"""check_attribution_sync's verdicts and messages (pure: the row of health/attribution_sync.sql)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events_pipeline.health.checks import CHECK_NAMES, evaluate_attribution_sync

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PREFIX = "check_attribution_sync [runbook: docs/runbook.md#check_attribution_sync]: "


def _row(**overrides):
    row = {
        "checked_at": NOW,
        "last_ok_at": NOW - timedelta(minutes=4),
        "last_run": {
            "sync_run_id": 7,
            "status": "ok",
            "finished_at": (NOW - timedelta(minutes=4)).isoformat(),
            "sites_asked": 3,
            "errors": 0,
            "deferred": 0,
            "sites_waiting": 1,
            "error_sample": None,
            "error": None,
        },
        "recent_runs": 6,
        "recent_runs_with_errors": 0,
        "recent_site_errors": 0,
        "open_problem_count": 0,
        "problems": [],
    }
    row.update(overrides)
    return row


def _judge(row, configured=True):
    return evaluate_attribution_sync(
        row, configured=configured, conn_id="pixel_management", max_age_minutes=30
    )


def test_the_check_is_listed():
    assert "check_attribution_sync" in CHECK_NAMES


def test_healthy():
    out = _judge(_row())
    assert out.ok
    assert out.message == (
        PREFIX + "last attribution sync without errors at 2026-11-27T11:56:00Z; last run #7 ok, "
        "3 site(s) asked; 1 site(s) waiting; no open problem"
    )


def test_off_without_the_connection():
    out = _judge(_row(last_ok_at=None, last_run=None, recent_runs=0), configured=False)
    assert out.ok and "not defined: attribution sync off" in out.message


def test_open_problems_fail_naming_domain_and_clients_even_without_the_connection():
    problems = [
        {
            "kind": "move",
            "domain": "news.example",
            "current_client_id": "acme",
            "answered_client_id": "globex",
            "applied": True,
            "applied_at": "2026-11-27T11:30:00+00:00",
            "rows_released": 5,
            "detected_at": "2026-11-27T11:30:00+00:00",
            "occurrences": 1,
            "detail": "",
        },
        {
            "kind": "unknown_client",
            "domain": "z.example",
            "current_client_id": None,
            "answered_client_id": "zeta",
            "applied": False,
            "applied_at": None,
            "rows_released": 0,
            "detected_at": "2026-11-27T10:00:00+00:00",
            "occurrences": 3,
            "detail": "",
        },
    ]
    out = _judge(_row(problems=problems, open_problem_count=2), configured=False)
    assert not out.ok
    assert out.message == (
        PREFIX + "2 open attribution problem(s) (acknowledge in attribution_sync_problems once handled): "
        "domain news.example moved from client acme to client globex (applied at 2026-11-27T11:30:00Z; "
        "5 unexported row(s) handed over, exported rows untouched); domain z.example: service answered "
        "client zeta, unknown in clients (mapped: none; not applied; since 2026-11-27T10:00:00Z, 3x)"
    )


def test_stale_sync_names_the_setting_and_the_last_error():
    last = {
        **_row()["last_run"],
        "status": "errors",
        "errors": 2,
        "error_sample": "domain x.example: no answer (HTTP 503)",
    }
    out = _judge(_row(last_ok_at=NOW - timedelta(minutes=45), last_run=last, recent_runs_with_errors=6))
    assert not out.ok
    assert "last attribution sync without errors: 2026-11-27T11:15:00Z (45 min ago)" in out.message
    assert "older than events_attribution_sync_max_age_minutes = 30" in out.message
    assert "6 of 6 run(s) in that time had errors" in out.message
    assert "errors, 2 site error(s), e.g. domain x.example: no answer (HTTP 503)" in out.message
    assert "(HTTP 503); 1 site(s) waiting" in out.message


def test_aborted_run_shows_its_error():
    last = {**_row()["last_run"], "status": "aborted", "error": "ServiceRefusedError: HTTP 401"}
    out = _judge(_row(last_ok_at=None, last_run=last))
    assert not out.ok
    assert "without errors: never" in out.message and "aborted, error: ServiceRefusedError" in out.message


def test_no_run_with_the_connection_defined():
    out = _judge(_row(last_ok_at=None, last_run=None, recent_runs=0))
    assert not out.ok
    assert "'pixel_management' is defined but no attribution sync run is recorded" in out.message
