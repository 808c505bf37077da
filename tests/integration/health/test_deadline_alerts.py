"""A run that misses its deadline e-mails on-call once, through a real local SMTP server.

The scheduler records the miss and the triggerer awaits the DAG's deadline callback with
the simple context Airflow builds (the run's REST fields and the deadline); the test
awaits the same callback with such a context.
"""

from __future__ import annotations

import asyncio
from email.header import decode_header, make_header

from events_pipeline.orchestration.deadlines import late_summary, run_is_late


def _context(run_id: str) -> dict:
    return {
        "dag_run": {
            "dag_run_id": run_id,
            "dag_id": "events_export",
            "data_interval_start": "2026-11-27T10:00:00Z",
            "data_interval_end": "2026-11-27T11:00:00Z",
            "queued_at": "2026-11-27T11:00:04.123456Z",
            "state": "running",
        },
        "deadline": {"id": "d-1", "deadline_time": "2026-11-27T11:45:04.123456Z"},
    }


def test_the_late_summary_names_the_run_the_hour_and_the_runbook():
    summary = late_summary("events_export", _context("scheduled__2026-11-27T10:00:00+00:00"))
    assert summary.startswith("LATE dag=events_export run=scheduled__2026-11-27T10:00:00+00:00 ")
    assert "interval=2026-11-27T10:00Z..2026-11-27T11:00Z" in summary
    assert "queued=2026-11-27T11:00Z" in summary
    assert "not finished 45 min after it was queued (deadline 2026-11-27T11:45Z)" in summary
    assert summary.endswith("runbook: docs/runbook.md#events_export")


def test_a_late_run_emails_on_call_once(smtp_inbox):
    context = _context("manual__late-run-1")
    asyncio.run(run_is_late("events_export", context=context))
    asyncio.run(run_is_late("events_export", context=context))  # a second call for the same run

    assert len(smtp_inbox.messages) == 1
    subject = str(make_header(decode_header(smtp_inbox.messages[0]["Subject"])))
    assert subject.startswith("[events-pipeline] LATE dag=events_export run=manual__late-run-1 "), subject
    assert smtp_inbox.recipients == [["oncall@example.com", "lead@example.com"]]


def test_a_context_without_fields_still_alerts(smtp_inbox):
    asyncio.run(run_is_late("events_health", context=None))
    assert len(smtp_inbox.messages) == 1
    subject = str(make_header(decode_header(smtp_inbox.messages[0]["Subject"])))
    assert subject.startswith("[events-pipeline] LATE dag=events_health run=? "), subject


def test_the_switch_parses_the_dags_without_deadline_alerts(monkeypatch):
    from events_pipeline.orchestration.deadlines import SWITCH, deadline_alert

    assert deadline_alert("events_export") is not None
    monkeypatch.setenv(SWITCH, "off")
    assert deadline_alert("events_export") is None


def test_a_backfill_run_still_queued_behind_its_run_limit_is_not_alerted(smtp_inbox):
    waiting = _context("backfill__2026-11-27T10:00:00+00:00")
    waiting["dag_run"] |= {"run_type": "backfill", "state": "queued"}
    running = _context("backfill__2026-11-27T09:00:00+00:00")
    running["dag_run"] |= {"run_type": "backfill", "state": "running"}

    asyncio.run(run_is_late("events_export", context=waiting))
    asyncio.run(run_is_late("events_export", context=running))

    assert len(smtp_inbox.messages) == 1
    subject = str(make_header(decode_header(smtp_inbox.messages[0]["Subject"])))
    assert "run=backfill__2026-11-27T09:00:00+00:00" in subject
