"""Alert channels are chosen by the connections that exist; notify never raises."""

from __future__ import annotations

import json
import logging
import socket
from types import SimpleNamespace

import pytest

from events_pipeline.orchestration import alerting


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(alerting, "_SENT", set())
    for name in (
        "AIRFLOW_CONN_SMTP_DEFAULT",
        "AIRFLOW_CONN_SLACK_DEFAULT",
        "AIRFLOW_VAR_EVENTS_ALERT_EMAIL_TO",
    ):
        monkeypatch.delenv(name, raising=False)


def _context(task_id: str = "check_quarantine", try_number: int = 1) -> dict:
    ti = SimpleNamespace(
        dag_id="events_health", task_id=task_id, run_id="r1", map_index=-1, try_number=try_number
    )
    return {"ti": ti}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smtp(monkeypatch, port: int) -> None:
    conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 2},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))


def test_no_connection_means_log_only(caplog):
    assert alerting.channels() == []
    with caplog.at_level(logging.INFO, logger="events_pipeline.oncall"):
        alerting.notify("FAILED x", _context())
    assert "summary only in this log" in caplog.text


def test_smtp_needs_recipients(monkeypatch, caplog):
    _smtp(monkeypatch, 25)
    with caplog.at_level(logging.WARNING, logger="events_pipeline.oncall"):
        assert alerting.channels() == []
    assert "events_alert_email_to is empty" in caplog.text
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_ALERT_EMAIL_TO", "a@example.com")
    assert alerting.channels() == [alerting.Channel("email", "smtp_default", "a@example.com")]


def test_slack_kinds(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_DEFAULT", json.dumps({"conn_type": "slack", "password": "xoxb-t"}))
    assert alerting.channels() == [alerting.Channel("slack", "slack_default", "#events-oncall")]
    notifier = alerting.build_notifier(alerting.channels()[0], "FAILED {{ boom }}")
    assert notifier.text == "FAILED {{ boom }}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_DEFAULT", json.dumps({"conn_type": "slackwebhook", "password": "https://h/x"})
    )
    assert alerting.channels()[0].kind == "slack_webhook"


def test_email_notifier_content(monkeypatch):
    _smtp(monkeypatch, 25)
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_ALERT_EMAIL_TO", "a@example.com, b@example.com")
    notifier = alerting.build_notifier(alerting.channels()[0], "FAILED <x> & y")
    assert notifier.to == ["a@example.com", "b@example.com"]
    assert notifier.subject == "[events-pipeline] FAILED <x> & y"
    assert notifier.html_content == "<pre>FAILED &lt;x&gt; &amp; y</pre>"
    assert notifier.from_email == alerting.FALLBACK_FROM


def test_unreachable_smtp_never_raises(monkeypatch, caplog):
    _smtp(monkeypatch, _closed_port())
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_ALERT_EMAIL_TO", "a@example.com")
    with caplog.at_level(logging.ERROR, logger="events_pipeline.oncall"):
        alerting.notify("FAILED x", _context())
    assert "email alert through connection 'smtp_default' failed" in caplog.text


def test_same_failure_alerts_once(monkeypatch, caplog):
    sent = []
    monkeypatch.setattr(alerting, "channels", lambda: [alerting.Channel("email", "smtp_default", "a@x")])
    monkeypatch.setattr(
        alerting, "build_notifier", lambda ch, s: SimpleNamespace(notify=lambda ctx: sent.append(s))
    )
    alerting.notify("FAILED x", _context())
    alerting.notify("FAILED x", _context())
    alerting.notify("FAILED y", _context(task_id="check_export_runs"))
    assert sent == ["FAILED x", "FAILED y"]


def test_broken_settings_never_raise(monkeypatch):
    def boom():
        raise RuntimeError("variable backend down")

    monkeypatch.setattr(alerting, "channels", boom)
    alerting.notify("FAILED x", _context())


HOSTILE = "FAILED file=incoming/<!channel>\nBcc: x@evil.example/<https://evil.example|click> & more.ndjson"


def test_slack_alerts_escape_file_names_and_errors(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_DEFAULT", json.dumps({"conn_type": "slack", "password": "xoxb-t"}))
    text = alerting.build_notifier(alerting.channels()[0], HOSTILE).text
    assert "<" not in text and ">" not in text and "\n" not in text
    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example|click&gt; &amp; more" in text
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_DEFAULT", json.dumps({"conn_type": "slackwebhook", "password": "https://h/x"})
    )
    assert alerting.build_notifier(alerting.channels()[0], HOSTILE).text == text


def test_email_subject_is_one_line_and_body_is_escaped(monkeypatch):
    _smtp(monkeypatch, 25)
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_ALERT_EMAIL_TO", "a@example.com")
    notifier = alerting.build_notifier(alerting.channels()[0], HOSTILE)
    assert "\n" not in notifier.subject and "\r" not in notifier.subject
    assert "Bcc:" in notifier.subject  # kept as text, not as a header
    assert "<!channel>" not in notifier.html_content and "&lt;!channel&gt;" in notifier.html_content
