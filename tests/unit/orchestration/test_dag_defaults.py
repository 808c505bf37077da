"""The shared DAG defaults and the on-call failure summary."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from events_pipeline.orchestration.dag_defaults import default_args, failure_summary, on_failure_log


def _context(**extra: object) -> dict:
    ti = SimpleNamespace(dag_id="events_export", task_id="export_client", map_index=2, try_number=4)
    ctx = {
        "ti": ti,
        "data_interval_start": datetime(2026, 11, 27, 10, tzinfo=UTC),
        "data_interval_end": datetime(2026, 11, 27, 11, tzinfo=UTC),
        "exception": RuntimeError("bucket 'acme-analytics' access denied\nsecond line"),
    }
    ctx.update(extra)
    return ctx


def test_failure_summary_is_one_line_with_everything_on_call_needs() -> None:
    line = failure_summary(_context())
    assert "\n" not in line
    for part in (
        "dag=events_export",
        "task=export_client[2]",
        "try=4",
        "interval=2026-11-27T10:00Z..2026-11-27T11:00Z",
        "RuntimeError: bucket 'acme-analytics' access denied second line",
        "runbook: docs/runbook.md#events_export",
    ):
        assert part in line


def test_failure_summary_without_interval_or_exception() -> None:
    line = failure_summary(_context(data_interval_start=None, exception=None))
    assert "interval=no interval" in line
    assert "error=unknown error" in line


def test_on_failure_log_logs_the_summary(caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="events_pipeline.oncall"):
        on_failure_log(_context())
    assert any("FAILED dag=events_export" in r.getMessage() for r in caplog.records)


def test_default_args_retry_with_capped_exponential_backoff() -> None:
    args = default_args(retries=5)
    assert args["retries"] == 5
    assert args["retry_exponential_backoff"] == 2.0
    assert args["retry_delay"] == timedelta(minutes=1)
    assert args["max_retry_delay"] == timedelta(minutes=30)
    assert args["on_failure_callback"] is on_failure_log


def test_start_date_defaults_and_parses_environment_values() -> None:
    from events_pipeline.orchestration.dag_defaults import start_date_from_env

    assert start_date_from_env("") == datetime(2026, 11, 26, tzinfo=UTC)
    assert start_date_from_env("2026-11-27T07:00:00") == datetime(2026, 11, 27, 7, tzinfo=UTC)
    assert start_date_from_env("2026-11-27T07:00:00+00:00") == datetime(2026, 11, 27, 7, tzinfo=UTC)
    with pytest.raises(ValueError, match="EVENTS_PIPELINE_START_DATE"):
        start_date_from_env("last tuesday")


def test_runbook_link_is_a_repo_path_unless_a_docs_base_url_is_set(monkeypatch):
    from events_pipeline.common.runbook import DOCS_BASE_URL_ENV, runbook_link

    monkeypatch.delenv(DOCS_BASE_URL_ENV, raising=False)
    assert runbook_link("events_export") == "docs/runbook.md#events_export"
    monkeypatch.setenv(DOCS_BASE_URL_ENV, "https://git.example.com/events-pipeline/blob/main/")
    assert runbook_link("events_export") == (
        "https://git.example.com/events-pipeline/blob/main/docs/runbook.md#events_export"
    )
