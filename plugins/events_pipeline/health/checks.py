"""Health checks of the pipeline: thresholds, the SQL check operator, S3 checks, messages.

Each check answers one question and, when the answer is bad, fails with one
line that says what is wrong, for which client or file, since when, and which
runbook entry to open (``docs/runbook.md#<check name>``).

- SQL checks (``include/sql/health/<name>.sql``) run through
  :class:`HealthSQLCheckOperator`, a ``SQLCheckOperator`` of common-sql whose
  query returns one row with an ``ok`` column plus the details the message
  needs; thresholds and the run's data interval are bound parameters.
- S3 checks (``incoming/`` backlog, ``quarantine/``) are plain functions the
  DAG's TaskFlow tasks call.

"Last hour" is the run's data interval (hourly ``CronDataIntervalTimetable``),
so a backfilled health run judges its own hour. S3 checks can only see the
present state of the bucket.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow.providers.common.sql.operators.sql import SQLCheckOperator, SQLCheckResult

from events_pipeline.common.db import POSTGRES_CONN_HOW, as_dict
from events_pipeline.common.errors import PipelineError, SettingError
from events_pipeline.common.runbook import runbook_link
from events_pipeline.common.settings import (
    EVENTS_DB_CONN_ID,
    VAR_LANDING_BUCKET,
    Setting,
    get_setting,
    register,
    require_connection,
)

log = logging.getLogger(__name__)

# --- thresholds (Airflow Variables; AIRFLOW_VAR_<NAME> works) -----------------

MIN_ATTRIBUTION_RATE = register(
    Setting(
        "events_health_min_attribution_rate",
        0.95,
        "check_attribution_rate fails when fewer than this share (0..1) of the hour's events have a client",
    )
)
ATTRIBUTION_MIN_EVENTS = register(
    Setting(
        "events_health_attribution_min_events",
        100,
        "check_attribution_rate judges an hour only when at least this many events arrived in it",
    )
)
MAX_PENDING_MINUTES = register(
    Setting(
        "events_health_max_pending_minutes",
        180,
        "check_pending_exports fails when an attributed event is still pending this many minutes "
        "after its created_at",
    )
)
BATCH_LOOKBACK_MINUTES = register(
    Setting(
        "events_health_batch_lookback_minutes",
        60,
        "check_batch_consistency also reads this many minutes before the hour for other rows of its batches",
    )
)
MAX_INCOMING_AGE_MINUTES = register(
    Setting(
        "events_health_max_incoming_age_minutes",
        30,
        "check_incoming_backlog fails when the oldest object in incoming/ is older than this",
    )
)
MAX_REJECTED_RATE = register(
    Setting(
        "events_health_max_rejected_rate",
        0.02,
        "check_rejected_rate fails when more than this share (0..1) of the hour's lines were rejected",
    )
)
REJECTED_MIN_LINES = register(
    Setting(
        "events_health_rejected_min_lines",
        100,
        "check_rejected_rate judges an hour only when at least this many lines were read in it",
    )
)
EXPORT_LOOKBACK_HOURS = register(
    Setting(
        "events_health_export_lookback_hours",
        24,
        "check_export_runs looks at this many closed hours for a missing or failed export run",
    )
)
EXPORT_GRACE_MINUTES = register(
    Setting(
        "events_health_export_grace_minutes",
        60,
        "check_export_runs expects an hour's export this many minutes after the hour ended",
    )
)
ERASURE_DEADLINE_DAYS = register(
    Setting(
        "events_erasure_deadline_days",
        7,
        "check_erasure_requests fails for an erasure request not done this many days after it was "
        "requested (well inside the legal month), and for any failed request",
    )
)

#: Prefixes of the landing bucket the S3 checks look at (contract §2 (docs/contract.md)).
INCOMING_PREFIX = "incoming/"
QUARANTINE_PREFIX = "quarantine/"
ERROR_SUFFIX = ".error.json"
#: How many clients / files / batches a message names before "and N more".
MAX_LISTED = 5


class HealthCheckError(PipelineError):
    """A check cannot judge this run (e.g. no data interval); the operator fails the task."""


@dataclass(frozen=True)
class CheckOutcome:
    """The verdict of one check.

    :param check: the check name (task id and runbook anchor).
    :param ok: ``True`` when healthy.
    :param message: one line for the log and the alert, starting with the check and runbook link.
    """

    check: str
    ok: bool
    message: str


# --- formatting helpers ------------------------------------------------------


def fmt_ts(value: datetime | str | None) -> str:
    """Format a timestamp as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC).

    :param value: a datetime (naive means UTC) or an ISO-8601 string (as jsonb gives them).
    """
    if value is None:
        return "?"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_pct(rate: float | None) -> str:
    """Format a 0..1 rate as a percentage with one decimal (``"87.5%"``).

    :param rate: the rate, or ``None`` (no data).
    """
    return "n/a" if rate is None else f"{float(rate) * 100:.1f}%"


def _more(items: list[Any], shown: int) -> str:
    return f"; and {len(items) - shown} more" if len(items) > shown else ""


def _interval(params: Mapping[str, Any]) -> str:
    return f"{fmt_ts(params['interval_start'])}..{fmt_ts(params['interval_end'])}"


def with_runbook(check: str, text: str) -> str:
    """Prefix ``text`` with the check name and its runbook link.

    The link comes first so it survives when the alert summary cuts a long message.

    :param check: the check name (its runbook anchor).
    :param text: the message.
    """
    return f"{check} [runbook: {runbook_link(check)}]: {text}"


# --- SQL checks: settings they read and the message of their result row -------


def _attribution_message(row: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    sites = row["top_unknown"] or []
    site_text = ", ".join(
        f"{s['site_id']} ({s['events']} events, first at {fmt_ts(s['first_seen'])})" for s in sites
    )
    if row["ok"]:
        if row["total_events"] < params["min_events"]:
            return (
                f"only {row['total_events']} events created in {_interval(params)} "
                f"(< {params['min_events']}): rate not judged"
            )
        return (
            f"attribution rate {fmt_pct(row['attribution_rate'])} of {row['total_events']} events "
            f"created in {_interval(params)} (minimum {fmt_pct(params['min_rate'])})"
        )
    return (
        f"attribution rate {fmt_pct(row['attribution_rate'])} "
        f"({row['attributed_events']} of {row['total_events']} events created in {_interval(params)}) "
        f"is below {fmt_pct(params['min_rate'])}; top unknown site_ids: {site_text or 'none'}"
    )


def _pending_message(row: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    minutes = params["max_pending_minutes"]
    if row["ok"]:
        return f"no attributed event created before {fmt_ts(row['cutoff'])} is still pending ({minutes} min)"
    clients = row["clients"] or []
    parts = []
    for c in clients[:MAX_LISTED]:
        detail = f"{c['unclaimed']} unclaimed"
        if c["claimed"]:
            detail += f", {c['claimed']} in export hours not succeeded since {fmt_ts(c['oldest_hour'])}"
        parts.append(f"client {c['client_id']}: {c['events']} since {fmt_ts(c['oldest'])} ({detail})")
    return (
        f"{row['total_events']} attributed events of {len(clients)} client(s) pending export for more than "
        f"{minutes} min (created before {fmt_ts(row['cutoff'])}): "
        + "; ".join(parts)
        + _more(clients, len(parts))
    )


def _batch_message(row: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    if row["ok"]:
        return f"every batch with rows created in {_interval(params)} has a single created_at"
    batches = row["batches"] or []
    parts = [
        f"batch {b['batch_id']} ({b['events']} events, clients {','.join(b['clients']) or '-'}, "
        f"file_id {','.join(str(f) for f in b['files']) or '-'}) has {b['created_ats']} created_at "
        f"from {fmt_ts(b['first_created_at'])} to {fmt_ts(b['last_created_at'])}"
        for b in batches[:MAX_LISTED]
    ]
    total = row["bad_batch_count"]
    more = f"; and {total - len(parts)} more" if total > len(parts) else ""
    return f"{total} batch(es) loaded with more than one created_at in {_interval(params)}: " + (
        "; ".join(parts) + more
    )


def _rejected_message(row: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    lines = row["loaded_lines"] + row["rejected_lines"]
    if row["ok"]:
        if lines < params["min_lines"]:
            return (
                f"only {lines} landing lines read in {_interval(params)} "
                f"(< {params['min_lines']}): not judged"
            )
        return (
            f"rejected-line rate {fmt_pct(row['rejected_rate'])} of {lines} lines in {row['file_count']} "
            f"files loaded in {_interval(params)} (maximum {fmt_pct(params['max_rate'])})"
        )
    files = row["worst_files"] or []
    parts = [
        f"{f['key']} ({f['rejected']} of {f['rejected'] + f['loaded']} lines rejected, loaded at "
        f"{fmt_ts(f['loaded_at'])}, see {f['rejected_key'] or 'rejected/'})"
        for f in files
    ]
    return (
        f"rejected-line rate {fmt_pct(row['rejected_rate'])} ({row['rejected_lines']} of {lines} lines in "
        f"{row['file_count']} files loaded in {_interval(params)}) is above {fmt_pct(params['max_rate'])}; "
        f"worst files: " + "; ".join(parts)
    )


def _export_runs_message(row: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    span = f"{fmt_ts(row['first_hour'])}..{fmt_ts(row['last_hour'])}"
    if row["ok"]:
        return f"every active client has a succeeded export run for each closed hour {span} (hour starts)"
    clients = row["clients"] or []
    parts = []
    for c in clients[:MAX_LISTED]:
        hours = c["hours"]
        listed = ", ".join(
            f"{fmt_ts(h['hour'])} {h['status']}" + (f" ({h['error']})" if h.get("error") else "")
            for h in hours[:3]
        )
        parts.append(
            f"client {c['client_id']}: {c['hours_missing']} hour(s) not exported since "
            f"{fmt_ts(c['since'])} [{listed}{', ...' if len(hours) > 3 else ''}]"
        )
    return (
        f"export run missing or not succeeded for {len(clients)} active client(s) in the closed hours "
        f"{span} (hour starts): " + "; ".join(parts) + _more(clients, len(parts))
    )


def _erasure_message(row: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    days = params["deadline_days"]
    if row["ok"]:
        if not row["open_count"]:
            return f"no erasure request open; none failed (deadline {days} day(s))"
        return (
            f"{row['open_count']} erasure request(s) open, the oldest requested at "
            f"{fmt_ts(row['oldest_open'])}; none failed, none older than {days} day(s)"
        )
    parts = []
    for r in (row["requests"] or [])[:MAX_LISTED]:
        head = f"request {r['request_id']} (client {r['client_id']}, requested {fmt_ts(r['requested_at'])}, "
        head += f"{float(r['age_days']):.1f} days ago)"
        if r["failed"]:
            state = f"failed after {r['failures']} failure(s)"
        else:
            state = f"{r['status']}, {r['failures']} failure(s), next attempt {fmt_ts(r['next_attempt_at'])}"
        parts.append(f"{head}: {state}" + (f": {r['error']}" if r.get("error") else ""))
    total = row["bad_count"]
    more = f"; and {total - len(parts)} more" if total > len(parts) else ""
    return (
        f"{total} erasure request(s) failed or not done within events_erasure_deadline_days = {days} "
        f"(the legal limit is one month): " + "; ".join(parts) + more
    )


@dataclass(frozen=True)
class SQLCheck:
    """A check whose verdict is one row of ``include/sql/health/<name>.sql``.

    :param name: task id, SQL file stem and runbook anchor.
    :param settings: SQL parameter name -> setting name, bound at run time.
    :param message: builds the message from the result row and the parameters.
    :param sql_name: the SQL file below ``include/sql``.
    """

    name: str
    settings: Mapping[str, str]
    message: Callable[[Mapping[str, Any], Mapping[str, Any]], str]
    sql_name: str

    def outcome(self, row: Mapping[str, Any] | None, params: Mapping[str, Any]) -> CheckOutcome:
        """Judge the result row of this check's query.

        :param row: the query's single row as a mapping (``None``: no row, a broken query).
        :param params: the bound parameters (interval and thresholds).
        """
        if row is None:
            return CheckOutcome(self.name, False, with_runbook(self.name, f"{self.sql_name} returned no row"))
        return CheckOutcome(self.name, bool(row["ok"]), with_runbook(self.name, self.message(row, params)))


def _sql_check(name: str, settings: Mapping[str, str], message: Callable[..., str]) -> SQLCheck:
    return SQLCheck(name, settings, message, f"health/{name.removeprefix('check_')}.sql")


#: The SQL checks by name (= task id = runbook anchor).
SQL_CHECKS: dict[str, SQLCheck] = {
    c.name: c
    for c in (
        _sql_check(
            "check_attribution_rate",
            {"min_rate": MIN_ATTRIBUTION_RATE.name, "min_events": ATTRIBUTION_MIN_EVENTS.name},
            _attribution_message,
        ),
        _sql_check(
            "check_pending_exports", {"max_pending_minutes": MAX_PENDING_MINUTES.name}, _pending_message
        ),
        _sql_check(
            "check_batch_consistency",
            {"batch_lookback_minutes": BATCH_LOOKBACK_MINUTES.name},
            _batch_message,
        ),
        _sql_check(
            "check_rejected_rate",
            {"max_rate": MAX_REJECTED_RATE.name, "min_lines": REJECTED_MIN_LINES.name},
            _rejected_message,
        ),
        _sql_check(
            "check_export_runs",
            {
                "export_lookback_hours": EXPORT_LOOKBACK_HOURS.name,
                "export_grace_minutes": EXPORT_GRACE_MINUTES.name,
            },
            _export_runs_message,
        ),
        _sql_check("check_erasure_requests", {"deadline_days": ERASURE_DEADLINE_DAYS.name}, _erasure_message),
    )
}

#: Every check (SQL and S3), in the order the DAG and the docs list them.
CHECK_NAMES = (
    "check_attribution_rate",
    "check_pending_exports",
    "check_batch_consistency",
    "check_incoming_backlog",
    "check_quarantine",
    "check_rejected_rate",
    "check_export_runs",
    "check_attribution_sync",
    "check_erasure_requests",
)


def interval_of(context: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """Return the data interval of a task's run.

    :param context: the Airflow task context.
    :raises HealthCheckError: the run has no data interval (a REST trigger with
        ``logical_date: null``): there is no hour to judge.
    """
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        raise HealthCheckError(
            "this run has no data interval (triggered with logical_date null): trigger events_health with "
            "a logical date or let the scheduler run it"
        )
    return start, end


def sql_parameters(check: SQLCheck, context: Mapping[str, Any]) -> dict[str, Any]:
    """Return the bound parameters of a SQL check: the data interval and its thresholds.

    :param check: the check.
    :param context: the Airflow task context (for ``data_interval_start/end``).
    """
    start, end = interval_of(context)
    params: dict[str, Any] = {"interval_start": start, "interval_end": end}
    for param, setting in check.settings.items():
        params[param] = get_setting(setting)
    return params


class HealthSQLCheckOperator(SQLCheckOperator):
    """A ``SQLCheckOperator`` for the health checks: one-line messages, bound thresholds.

    The query (``sql``, a file found through the DAG's ``template_searchpath``)
    returns one row with a boolean ``ok`` and the details the message needs.
    The parameters are the run's data interval and the check's settings
    (Airflow Variables, read at run time). A bad result fails the task without
    retries (``AirflowFailException``: retrying does not change the data); a
    database error still retries.

    :param check: the check name, a key of :data:`SQL_CHECKS` (also the task id).
    :param conn_id: the events database connection.
    :param kwargs: passed to ``SQLCheckOperator`` / ``BaseOperator``.
    """

    def __init__(self, *, check: str, conn_id: str = EVENTS_DB_CONN_ID, **kwargs: Any) -> None:
        definition = SQL_CHECKS[check]
        kwargs.setdefault("task_id", check)
        kwargs.setdefault("retry_on_failure", False)
        super().__init__(sql=definition.sql_name, conn_id=conn_id, **kwargs)
        self.check = check

    def execute(self, context: Any) -> str:
        """Run the query, log the verdict, fail with the message when it is bad.

        :param context: the Airflow task context.
        """
        definition = SQL_CHECKS[self.check]
        try:
            params = sql_parameters(definition, context)
            # a missing connection would otherwise surface from get_db_hook() and be retried
            require_connection(self.conn_id, POSTGRES_CONN_HOW)
        except (HealthCheckError, SettingError) as exc:  # retrying cannot fix either
            self._raise_exception(f"{self.check} [runbook: {runbook_link('events_health')}]: {exc}")
        self.parameters = params
        row = self.get_db_hook().run(self.sql, parameters=params, handler=as_dict)
        outcome = definition.outcome(row, params)
        self.check_results = [
            SQLCheckResult(
                name=self.check,
                check_type="events_health",
                success=outcome.ok,
                actual=outcome.message,
                content=self.sql,
                description=f"events pipeline health check, see {runbook_link(self.check)}",
            )
        ]
        if not outcome.ok:
            self._raise_exception(outcome.message)
        self.log.info("OK %s", outcome.message)
        return outcome.message


# --- S3 checks -----------------------------------------------------------------


def _objects(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(o for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    return out


def evaluate_backlog(
    objects: Iterable[Mapping[str, Any]], *, bucket: str, now: datetime, max_age_minutes: int
) -> CheckOutcome:
    """Judge the ``incoming/`` backlog: fail when its oldest object is too old.

    :param objects: S3 listing entries (``Key``, ``Size``, ``LastModified``).
    :param bucket: the landing bucket (for the message).
    :param now: the time to measure ages against.
    :param max_age_minutes: the threshold.
    """
    name = "check_incoming_backlog"
    objs = sorted(objects, key=lambda o: (o["LastModified"], o["Key"]))
    where = f"s3://{bucket}/{INCOMING_PREFIX}"
    if not objs:
        return CheckOutcome(name, True, with_runbook(name, f"no backlog in {where}"))
    total = sum(int(o.get("Size", 0)) for o in objs)
    oldest = objs[0]
    age_min = (now - oldest["LastModified"]).total_seconds() / 60
    text = (
        f"backlog in {where}: {len(objs)} files, {total} bytes; oldest {oldest['Key']} since "
        f"{fmt_ts(oldest['LastModified'])} ({age_min:.0f} min old"
    )
    if age_min > max_age_minutes:
        return CheckOutcome(
            name, False, with_runbook(name, f"{text} > {max_age_minutes} min): ingest is behind")
        )
    return CheckOutcome(name, True, with_runbook(name, f"{text} <= {max_age_minutes} min)"))


def error_reason(raw: bytes | str | None) -> str:
    """Extract a short reason from a quarantine ``.error.json`` body.

    Ingest writes ``{"kind", "detail", "line", ...}``; ``reason`` / ``error`` /
    ``message`` are understood too, anything else is shown raw (cut to 200 chars).

    :param raw: the object's bytes (``None`` when there is no error file).
    """
    if raw is None:
        return "no .error.json"
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        doc = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200]
    if isinstance(doc, dict):
        detail = next((doc[k] for k in ("detail", "reason", "error", "message") if doc.get(k)), None)
        if detail is not None:
            text = f"{doc['kind']}: {detail}" if doc.get("kind") else str(detail)
            if doc.get("line"):
                text += f" at line {doc['line']}"
            return " ".join(text.split())[:200]
    return " ".join(json.dumps(doc).split())[:200]


def quarantined_files(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Return the quarantined data files of a ``quarantine/`` listing, without their companions.

    A key ending in ``.error.json`` is a companion unless it has a companion of its
    own: a landing file that was itself named ``*.error.json`` is quarantined as
    ``quarantine/x.error.json`` next to ``quarantine/x.error.json.error.json``, and is
    reported like any other file.

    :param objects: S3 listing entries under ``quarantine/``.
    """
    objs = list(objects)
    keys = {o["Key"] for o in objs}
    return [o for o in objs if not o["Key"].endswith(ERROR_SUFFIX) or o["Key"] + ERROR_SUFFIX in keys]


def evaluate_quarantine(
    objects: Iterable[Mapping[str, Any]], *, bucket: str, reasons: Mapping[str, str] | None = None
) -> CheckOutcome:
    """Judge ``quarantine/``: fail when it holds any file.

    :param objects: S3 listing entries under ``quarantine/`` (``.error.json``
        companions included; they are not counted as files).
    :param bucket: the landing bucket (for the message).
    :param reasons: data key -> reason read from its ``.error.json``.
    """
    name = "check_quarantine"
    reasons = reasons or {}
    objs = quarantined_files(objects)
    if not objs:
        return CheckOutcome(name, True, with_runbook(name, f"s3://{bucket}/{QUARANTINE_PREFIX} is empty"))
    objs.sort(key=lambda o: (o["LastModified"], o["Key"]))
    parts = [
        f"{o['Key']} since {fmt_ts(o['LastModified'])} ({reasons.get(o['Key'], 'reason unknown')})"
        for o in objs[:MAX_LISTED]
    ]
    text = (
        f"{len(objs)} file(s) in s3://{bucket}/{QUARANTINE_PREFIX} could not be read: "
        + "; ".join(parts)
        + _more(objs, len(parts))
    )
    return CheckOutcome(name, False, with_runbook(name, text))


def _landing(conn_id: str | None) -> tuple[Any, str]:
    from events_pipeline.common.s3 import check_bucket, s3_client

    bucket = get_setting(VAR_LANDING_BUCKET)
    client = s3_client(conn_id)
    check_bucket(client, bucket, what=f"Variable {VAR_LANDING_BUCKET}", conn_id=conn_id)
    return client, bucket


def check_incoming_backlog(conn_id: str | None = None, now: datetime | None = None) -> CheckOutcome:
    """List ``incoming/`` of the landing bucket and judge the backlog.

    :param conn_id: AWS connection id (``None``: ``aws_default``).
    :param now: reference time (default: the current time; S3 only shows the present).
    """
    client, bucket = _landing(conn_id)
    started = datetime.now(UTC)
    objs = _objects(client, bucket, INCOMING_PREFIX)
    log.info(
        "listed %d objects under s3://%s/%s in %.2f s",
        len(objs),
        bucket,
        INCOMING_PREFIX,
        (datetime.now(UTC) - started).total_seconds(),
    )
    return evaluate_backlog(
        objs,
        bucket=bucket,
        now=now or datetime.now(UTC),
        max_age_minutes=get_setting(MAX_INCOMING_AGE_MINUTES.name),
    )


def check_quarantine(conn_id: str | None = None) -> CheckOutcome:
    """List ``quarantine/`` of the landing bucket; name each file, its date and reason.

    :param conn_id: AWS connection id (``None``: ``aws_default``).
    """
    from botocore.exceptions import ClientError

    client, bucket = _landing(conn_id)
    objs = _objects(client, bucket, QUARANTINE_PREFIX)
    keys = {o["Key"] for o in objs}
    data = sorted(quarantined_files(objs), key=lambda o: o["LastModified"])
    reasons: dict[str, str] = {}
    for o in data[:MAX_LISTED]:
        error_key = o["Key"] + ERROR_SUFFIX
        if error_key not in keys:
            reasons[o["Key"]] = error_reason(None)
            continue
        try:
            body = client.get_object(Bucket=bucket, Key=error_key)["Body"].read(4096)
        except ClientError as exc:  # deleted between list and get
            body = f"cannot read {error_key}: {exc}".encode()
        reasons[o["Key"]] = error_reason(body)
    return evaluate_quarantine(objs, bucket=bucket, reasons=reasons)


def run_s3_check(name: str, conn_id: str | None = None) -> str:
    """Run an S3 check by name; raise ``AirflowFailException`` with its message when it fails.

    :param name: ``"check_incoming_backlog"`` or ``"check_quarantine"``.
    :param conn_id: AWS connection id (``None``: ``aws_default``).
    :return: the healthy message (also logged).
    """
    from airflow.sdk.exceptions import AirflowFailException

    checks: dict[str, Callable[[str | None], CheckOutcome]] = {
        "check_incoming_backlog": check_incoming_backlog,
        "check_quarantine": check_quarantine,
    }
    outcome = checks[name](conn_id)
    if not outcome.ok:
        raise AirflowFailException(outcome.message)
    log.info("OK %s", outcome.message)
    return outcome.message


# --- attribution sync check ------------------------------------------------------


def _problem_text(p: Mapping[str, Any]) -> str:
    """One problem of ``attribution_sync_problems`` as message text (domain and both client ids).

    :param p: the problem row (as jsonb gives it).
    """
    domain, old, new = p["domain"], p.get("current_client_id"), p.get("answered_client_id")
    when = f"since {fmt_ts(p['detected_at'])}, {p['occurrences']}x"
    if p["kind"] == "move" and p["applied"]:
        return (
            f"domain {domain} moved from client {old} to client {new} (applied at {fmt_ts(p['applied_at'])}; "
            f"{p['rows_released']} unexported row(s) handed over, exported rows untouched)"
        )
    if p["kind"] == "move":
        return f"domain {domain}: service says client {new}, manual mapping to client {old} kept ({when})"
    if p["kind"] == "unknown_client":
        return (
            f"domain {domain}: service answered client {new}, unknown in clients "
            f"(mapped: {old or 'none'}; not applied; {when})"
        )
    if p["kind"] == "withdrawn":
        return f"domain {domain}: service no longer knows it (404), still mapped to client {old} ({when})"
    return f"domain {domain}: malformed answer, not applied ({when}): {p.get('detail') or ''}"[:300]


def evaluate_attribution_sync(
    row: Mapping[str, Any], *, configured: bool, conn_id: str, max_age_minutes: int
) -> CheckOutcome:
    """Judge the attribution sync's state (one row of ``health/attribution_sync.sql``).

    Fails when an open problem exists (an answer not applied, or a move applied:
    named with domain and client ids), or, with the connection defined, when the
    last sync run without errors is older than ``max_age_minutes`` (or none ran).

    :param row: the query's row.
    :param configured: whether the service's connection exists (without it the sync is off).
    :param conn_id: the connection id, for the message.
    :param max_age_minutes: the value of ``events_attribution_sync_max_age_minutes``.
    """
    name = "check_attribution_sync"
    problems = row["problems"] or []
    last = row["last_run"] or None
    now = row["checked_at"]
    waiting = f"{last['sites_waiting']} site(s) waiting" if last and last["sites_waiting"] is not None else ""
    faults: list[str] = []
    if problems:
        parts = [_problem_text(p) for p in problems[:MAX_LISTED]]
        faults.append(
            f"{row['open_problem_count']} open attribution problem(s) (acknowledge in "
            "attribution_sync_problems once handled): " + "; ".join(parts) + _more(problems, len(parts))
        )
    last_ok = row["last_ok_at"]
    if configured:
        if last is None:
            faults.append(
                f"Airflow connection {conn_id!r} is defined but no attribution sync run is recorded: "
                "is events_attribution_sync paused?"
            )
        elif last_ok is None or (now - last_ok).total_seconds() > max_age_minutes * 60:
            ago = (
                f"{fmt_ts(last_ok)} ({(now - last_ok).total_seconds() / 60:.0f} min ago)"
                if last_ok
                else "never"
            )
            detail = f"{last['errors']} site error(s)"
            if last.get("error"):
                detail = f"error: {last['error']}"
            elif last.get("error_sample"):
                detail += f", e.g. {last['error_sample']}"
            faults.append(
                f"last attribution sync without errors: {ago}, older than "
                f"events_attribution_sync_max_age_minutes = {max_age_minutes}; "
                f"{row['recent_runs_with_errors']} of {row['recent_runs']} run(s) in that time had errors; "
                f"last run #{last['sync_run_id']} at {fmt_ts(last['finished_at'])}: "
                f"{last['status']}, {detail}; {waiting or 'sites waiting unknown'}"
            )
    if faults:
        return CheckOutcome(name, False, with_runbook(name, " | ".join(faults)))
    if not configured:
        return CheckOutcome(
            name,
            True,
            with_runbook(name, f"connection {conn_id!r} not defined: attribution sync off, no open problem"),
        )
    return CheckOutcome(
        name,
        True,
        with_runbook(
            name,
            f"last attribution sync without errors at {fmt_ts(last_ok)}; last run #{last['sync_run_id']} "
            f"{last['status']}, {last['sites_asked']} site(s) asked; {waiting}; no open problem",
        ),
    )


def check_attribution_sync() -> CheckOutcome:
    """Read the attribution sync's state from the events database and judge it."""
    from events_pipeline.attribution.pixel_management import PIXEL_CONN_ID, load_config
    from events_pipeline.attribution.sync import SYNC_MAX_AGE_MINUTES
    from events_pipeline.common.db import connect, load_sql

    max_age = int(get_setting(SYNC_MAX_AGE_MINUTES.name))
    configured = load_config(PIXEL_CONN_ID) is not None
    with connect() as conn:
        cur = conn.execute(load_sql("health/attribution_sync.sql"), {"max_age_minutes": max_age})
        row = as_dict(cur)
    assert row is not None  # the query always returns one row
    return evaluate_attribution_sync(
        row, configured=configured, conn_id=PIXEL_CONN_ID, max_age_minutes=max_age
    )


def run_attribution_sync_check() -> str:
    """Run ``check_attribution_sync``; raise ``AirflowFailException`` with its message when it fails.

    A bad connection or Variable fails at once too (naming it): retrying cannot fix either.
    """
    from airflow.sdk.exceptions import AirflowFailException

    try:
        outcome = check_attribution_sync()
    except SettingError as exc:
        raise AirflowFailException(
            f"check_attribution_sync [runbook: {runbook_link('check_attribution_sync')}]: {exc}"
        ) from exc
    if not outcome.ok:
        raise AirflowFailException(outcome.message)
    log.info("OK %s", outcome.message)
    return outcome.message
