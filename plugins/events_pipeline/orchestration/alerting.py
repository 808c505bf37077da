"""Alerts: send the one-line failure summary to a person, through Airflow notifiers.

``dag_defaults.on_failure_log`` (every task's ``on_failure_callback``) logs the
summary and calls :func:`notify`. Channels, each enabled only when its Airflow
connection exists:

- e-mail: ``SmtpNotifier`` (smtp provider) through connection
  ``events_alert_smtp_conn_id`` (default ``smtp_default``) to the addresses in
  Variable ``events_alert_email_to`` (comma-separated);
- Slack: ``SlackNotifier`` (slack provider, API token connection) or
  ``SlackWebhookNotifier`` when the connection is of type ``slackwebhook``,
  through ``events_alert_slack_conn_id`` (default ``slack_default``), channel
  ``events_alert_slack_channel``.

Without any of them the summary is in the task log only. ``notify`` never
raises (an alerting failure must not hide the task's own error) and sends one
alert per failed task instance and try: the callback runs once when a task
fails for good (not on retries), so a failing health check alerts once per run.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from events_pipeline.common.settings import Setting, get_setting, register

log = logging.getLogger("events_pipeline.oncall")

SMTP_CONN_ID = register(
    Setting(
        "events_alert_smtp_conn_id", "smtp_default", "SMTP connection for alert e-mails (absent: no e-mail)"
    )
)
EMAIL_TO = register(
    Setting("events_alert_email_to", "", "comma-separated recipients of alert e-mails (empty: no e-mail)")
)
EMAIL_FROM = register(
    Setting(
        "events_alert_email_from",
        "",
        "sender of alert e-mails (empty: the SMTP connection's from_email, else events-pipeline@localhost)",
    )
)
SLACK_CONN_ID = register(
    Setting(
        "events_alert_slack_conn_id",
        "slack_default",
        "Slack connection (API token, or type slackwebhook) for alerts (absent: no Slack)",
    )
)
SLACK_CHANNEL = register(
    Setting("events_alert_slack_channel", "#events-oncall", "Slack channel of alerts (API connections only)")
)

FALLBACK_FROM = "events-pipeline@localhost"
SUBJECT_PREFIX = "[events-pipeline] "

#: Keys of alerts already sent by this process (a callback invoked twice for the
#: same failure, e.g. by a task and a DAG callback, alerts once).
_SENT: set[tuple[str, ...]] = set()
_SENT_MAX = 10_000


@dataclass(frozen=True)
class Channel:
    """One configured alert channel.

    :param kind: ``"email"``, ``"slack"`` or ``"slack_webhook"``.
    :param conn_id: the Airflow connection it sends through.
    :param target: recipients or channel (for the log line).
    """

    kind: str
    conn_id: str
    target: str


def _connection(conn_id: str) -> Any | None:
    """Return the Airflow connection ``conn_id``, or ``None`` when it is not defined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    if not conn_id:
        return None
    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def channels() -> list[Channel]:
    """Return the alert channels whose connection exists (and are fully configured).

    A present SMTP connection without recipients is logged as a warning and skipped.
    """
    out: list[Channel] = []
    smtp_id = get_setting(SMTP_CONN_ID.name)
    if _connection(smtp_id) is not None:
        to = str(get_setting(EMAIL_TO.name) or "").strip()
        if to:
            out.append(Channel("email", smtp_id, to))
        else:
            log.warning(
                "SMTP connection %r exists but Variable %s is empty: no alert e-mail is sent",
                smtp_id,
                EMAIL_TO.name,
            )
    slack_id = get_setting(SLACK_CONN_ID.name)
    slack = _connection(slack_id)
    if slack is not None:
        if (slack.conn_type or "").replace("_", "").lower() == "slackwebhook":
            out.append(Channel("slack_webhook", slack_id, "webhook"))
        else:
            out.append(Channel("slack", slack_id, str(get_setting(SLACK_CHANNEL.name))))
    return out


def _alert_key(context: Mapping[str, Any]) -> tuple[str, ...]:
    ti = context.get("ti") or context.get("task_instance")
    run_id = getattr(ti, "run_id", None) or getattr(context.get("dag_run"), "run_id", "?")
    return (
        str(getattr(ti, "dag_id", "?")),
        str(run_id),
        str(getattr(ti, "task_id", "?")),
        str(getattr(ti, "map_index", -1)),
        str(getattr(ti, "try_number", "?")),
    )


_CONTROL = dict.fromkeys(range(32), " ") | {127: " "}


def one_line(text: str) -> str:
    """Return ``text`` with control characters (CR, LF, tab...) as spaces.

    A file name or an error text may hold a newline; in an e-mail subject it would
    start a new header, in a chat line a fake second line.

    :param text: any text from a file name, an error or a setting.
    """
    return text.translate(_CONTROL)


def slack_text(summary: str) -> str:
    """Return ``summary`` escaped for Slack: ``&``, ``<`` and ``>`` as entities, on one line.

    Slack reads ``<...>`` as a link or a mention (``<!channel>``, ``<https://x|click>``);
    escaped, a file name or an error text shows as written and pings nobody.

    :param summary: the failure summary.
    """
    return one_line(summary).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_notifier(channel: Channel, summary: str) -> Any:
    """Build the Airflow notifier of ``channel`` carrying ``summary``.

    The text is set explicitly (no Jinja rendering), so braces in an error
    message cannot break the template engine; it is escaped for its channel
    (HTML for the e-mail body, one line for its subject, Slack's ``<>&``).

    :param channel: a channel from :func:`channels`.
    :param summary: the one-line failure summary.
    """
    if channel.kind == "email":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        conn = _connection(channel.conn_id)
        sender = str(get_setting(EMAIL_FROM.name) or "") or (
            (conn.extra_dejson.get("from_email") if conn is not None else None) or FALLBACK_FROM
        )
        return SmtpNotifier(
            smtp_conn_id=channel.conn_id,
            to=[a.strip() for a in channel.target.split(",") if a.strip()],
            from_email=sender,
            subject=(SUBJECT_PREFIX + one_line(summary))[:200],
            html_content=f"<pre>{html.escape(summary)}</pre>",
        )
    if channel.kind == "slack_webhook":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        return SlackWebhookNotifier(slack_webhook_conn_id=channel.conn_id, text=slack_text(summary))
    from airflow.providers.slack.notifications.slack import SlackNotifier

    return SlackNotifier(slack_conn_id=channel.conn_id, text=slack_text(summary), channel=channel.target)


def notify(summary: str, context: dict) -> None:
    """Send ``summary`` to every configured channel; log only when there is none.

    Never raises: a broken channel is logged (naming its connection) and the
    others are still tried.

    :param summary: the one-line failure summary (``dag_defaults.failure_summary``).
    :param context: the Airflow task context of the failure.
    """
    try:
        key = _alert_key(context)
        if key in _SENT:
            log.info("alert already sent for %s; not sending it again", "/".join(key))
            return
        if len(_SENT) >= _SENT_MAX:  # a long-lived process: forget old keys
            _SENT.clear()
        _SENT.add(key)
        configured = channels()
    except Exception:  # alerting must never raise
        log.exception("alerting: cannot read the alert settings; summary only in this log: %s", summary)
        return
    if not configured:
        log.info(
            "alerting: no alert connection (%s, %s) defined; summary only in this log",
            SMTP_CONN_ID.name,
            SLACK_CONN_ID.name,
        )
        return
    for channel in configured:
        try:
            build_notifier(channel, summary).notify(context)
        except Exception:  # one broken channel must not stop the others
            log.exception("alerting: %s alert through connection %r failed", channel.kind, channel.conn_id)
        else:
            log.info(
                "alerting: %s alert sent through %r to %s", channel.kind, channel.conn_id, channel.target
            )
