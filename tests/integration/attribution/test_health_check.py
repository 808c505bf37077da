"""events_health.check_attribution_sync through dag.test(): passes without the sync, fails on its state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import task_states

from .conftest import connection_json

CHECK = "check_attribution_sync"


@pytest.fixture
def run_health(run_dag: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run events_health for the last hour; return (states, check message when it failed)."""
    from events_pipeline.orchestration import dag_defaults

    errors: dict[str, str] = {}
    real = dag_defaults.failure_summary

    def recording(context: dict[str, Any]) -> str:
        ti = context.get("ti") or context.get("task_instance")
        errors[getattr(ti, "task_id", "?")] = str(context.get("exception"))
        return real(context)

    monkeypatch.setattr(dag_defaults, "failure_summary", recording)

    def _run() -> tuple[dict[str, str], str | None]:
        errors.clear()
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        dr = run_dag("events_health", logical_date=end)
        return task_states(dr), errors.get(CHECK)

    return _run


def test_passes_when_the_sync_is_off_and_nothing_is_open(sync_env, run_health, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PIXEL_MANAGEMENT", raising=False)
    states, message = run_health()
    assert states[CHECK] == "success", message


def test_fails_naming_domain_and_both_clients_of_a_move(sync_env, run_health, monkeypatch):
    db = sync_env
    monkeypatch.delenv("AIRFLOW_CONN_PIXEL_MANAGEMENT", raising=False)
    db.execute(
        "INSERT INTO attribution_sync_problems (kind, domain, current_client_id, answered_client_id, "
        "applied, applied_at, rows_released) "
        "VALUES ('move', 'news.example', 'acme', 'globex', true, now(), 12)"
    )

    states, message = run_health()

    assert states[CHECK] == "failed"
    assert message is not None
    assert message.startswith(f"{CHECK} [runbook: docs/runbook.md#{CHECK}]: 1 open attribution problem(s)")
    assert "domain news.example moved from client acme to client globex" in message
    assert "12 unexported row(s) handed over" in message


def test_fails_when_the_connection_exists_and_no_sync_succeeded_lately(sync_env, run_health, monkeypatch):
    db = sync_env
    monkeypatch.setenv("AIRFLOW_CONN_PIXEL_MANAGEMENT", connection_json(9))
    states, message = run_health()
    assert states[CHECK] == "failed"
    assert "no attribution sync run is recorded: is events_attribution_sync paused?" in (message or "")

    db.execute(
        "INSERT INTO attribution_sync_runs (status, started_at, finished_at, sites_asked, sites_waiting) "
        "VALUES "
        "('ok', now() - interval '50 minutes', now() - interval '49 minutes', 3, 0), "
        "('errors', now() - interval '4 minutes', now() - interval '3 minutes', 2, 2)"
    )
    db.execute("UPDATE attribution_sync_runs SET errors = 2, error_sample = 'domain x.example: no answer' ")
    db.execute("UPDATE attribution_sync_runs SET errors = 0, error_sample = NULL WHERE status = 'ok'")
    states, message = run_health()
    assert states[CHECK] == "failed"
    assert message is not None
    assert "last attribution sync without errors:" in message
    assert "(49 min ago), older than events_attribution_sync_max_age_minutes = 30" in message
    assert "last run #2" in message and "errors, 2 site error(s), e.g. domain x.example" in message

    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_ATTRIBUTION_SYNC_MAX_AGE_MINUTES", "60")
    states, message = run_health()
    assert states[CHECK] == "success", message
