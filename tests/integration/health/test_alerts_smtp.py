"""A failing events_health run e-mails one alert per failing check, through a real local SMTP server."""

from __future__ import annotations

import email
from datetime import timedelta
from email.header import decode_header, make_header

from tests.integration.health.conftest import add_client, add_events, current_hour


def _subject(msg: email.message.Message) -> str:
    return str(make_header(decode_header(msg["Subject"])))


def test_one_email_per_failing_check(health_env, db, run_health, smtp_inbox, monkeypatch):
    """Two kinds of failure, both failing at once: bad data, and a missing bucket (a setting error)."""
    end = current_hour()
    start = end - timedelta(hours=1)
    add_client(db, "acme")
    add_events(db, 10, created_at=start + timedelta(minutes=1), client_id="acme", batch_id="b-split")
    add_events(db, 10, created_at=start + timedelta(minutes=2), client_id="acme", batch_id="b-split")
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_LANDING_BUCKET", "no-such-landing-bucket")

    run = run_health(end)

    failing = {"check_batch_consistency", "check_incoming_backlog", "check_quarantine"}
    assert run.failed() == failing, run.errors
    assert len(run.alerts) == 3
    subjects = sorted(_subject(m) for m in smtp_inbox.messages)
    assert len(subjects) == 3, subjects
    for subject, task in zip(subjects, sorted(failing), strict=True):
        assert subject.startswith("[events-pipeline] FAILED dag=events_health task=" + task), subject
    # a setting error is not retried (SettingError is an AirflowFailException): one try, one alert
    assert sum("try=1" in s for s in subjects) == 3, subjects
    assert smtp_inbox.recipients == [["oncall@example.com", "lead@example.com"]] * 3
    bodies = [
        m.get_payload(0).get_payload(decode=True).decode()
        if m.is_multipart()
        else m.get_payload(decode=True).decode()
        for m in smtp_inbox.messages
    ]
    assert any("[runbook: docs/runbook.md#check_batch_consistency]" in b for b in bodies)
    assert sum("no-such-landing-bucket" in b for b in bodies) == 2
    assert all("runbook: docs/runbook.md#events_health" in b for b in bodies)
