"""Many clients per task: plan groups sized by their rows, export each group's clients in turn.

A task per client made the hour's cost grow with task start-ups (seconds each); one
task per GROUP of clients makes it grow with rows. Each hourly run (``events_export``):

1. ``plan_export`` (:func:`plan`) lists the clients to export and what each has to do
   (``export/plan_clients.sql``: its unclaimed rows, rows already in the hour) and packs
   them into at most ``events_export_max_groups`` groups of about equal work (the
   heaviest client first into the lightest group). Clients whose latest earlier hour did
   not succeed (a bucket that times out, refused credentials) get a group of their own,
   run last, so they cannot slow down the healthy ones.
2. ``export_group`` (:func:`run_group`), mapped over the groups (the UI names each by its
   clients), exports its clients one after another with
   :func:`~events_pipeline.export.client_hour.export_client_hour`, each isolated: a
   client that fails is logged and the next one goes on; at the end the task fails
   naming the failed clients (an ``AirflowFailException`` when no retry can help), and
   its retry exports only the clients that did not succeed in this run.

A manual trigger may name clients and an hour range (:func:`form_request`): the plan then
exports those clients for those hours, in hour order per client, and nothing else.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from events_pipeline.common.db import as_dicts, connect, load_sql
from events_pipeline.common.errors import PipelineError
from events_pipeline.common.intervals import HOUR, HourInterval, floor_hour, hour_of
from events_pipeline.common.run_params import ParamError
from events_pipeline.common.settings import EVENTS_DB_CONN_ID, Setting, get_setting, register
from events_pipeline.export.client_hour import PermanentExportError, export_client_hour, shared_inputs
from events_pipeline.export.keys import CLIENT_ID_RE

log = logging.getLogger(__name__)

MAX_GROUPS = register(
    Setting(
        "events_export_max_groups",
        8,
        "export: most mapped export tasks per run; clients are packed into them by their rows",
    )
)
CLIENT_COST_ROWS = register(
    Setting(
        "events_export_client_cost_rows",
        10_000,
        "export: what one client's fixed cost (connections, S3 calls, manifest) weighs in rows when "
        "clients are packed into groups",
    )
)
#: Longest hour range of a manual re-export (one week).
MAX_FORM_HOURS = 168
#: Longest text the UI shows for a mapped task (``rendered_map_index``).
MAX_LABEL = 200


class GroupExportError(PipelineError):
    """Some clients of a group failed; the message names each (the retry exports only them)."""


class PermanentGroupExportError(GroupExportError, AirflowFailException):
    """Every failed client of a group failed for a reason no retry can fix: no retries."""


@dataclass(frozen=True)
class ExportRequest:
    """What a run exports: its hours and, for a manual re-export, its clients.

    :param hours: the hours, in order.
    :param clients: the client ids named on the trigger form, or ``None`` (every active client).
    :param allow_shrink: the operator's recorded choice (who / why) letting hours shrink, or ``None``.
    """

    hours: tuple[HourInterval, ...]
    clients: tuple[str, ...] | None = None
    allow_shrink: str | None = None


@dataclass
class ExportGroup:
    """One mapped export task: its clients, in export order, and the hours they are exported for.

    :param index: 0-based group number.
    :param clients: client ids.
    :param hours: hour starts (ISO-8601, UTC).
    :param weight: the rows (and row-equivalents of fixed costs) it holds.
    :param suspect: its clients' latest hour failed: run last, apart from the others.
    :param allow_shrink: the operator's choice for a manual re-export, or ``None``.
    """

    index: int
    clients: list[str] = field(default_factory=list)
    hours: list[str] = field(default_factory=list)
    weight: int = 0
    suspect: bool = False
    allow_shrink: str | None = None

    @property
    def label(self) -> str:
        """What the UI shows for the task: its number and clients (cut to :data:`MAX_LABEL`)."""
        head = f"g{self.index + 1:02d}{'!' if self.suspect else ''}:"
        text = f"{head} {','.join(self.clients)}"
        if len(text) <= MAX_LABEL:
            return text
        shown: list[str] = []
        for client in self.clients:
            if len(head) + len(",".join([*shown, client])) + 12 > MAX_LABEL:
                break
            shown.append(client)
        return f"{head} {','.join(shown)} (+{len(self.clients) - len(shown)})"

    def as_dict(self) -> dict[str, Any]:
        """The group as the plan task returns it (JSON, for XCom)."""
        return {
            "index": self.index,
            "label": self.label,
            "clients": self.clients,
            "hours": self.hours,
            "weight": self.weight,
            "suspect": self.suspect,
            "allow_shrink": self.allow_shrink,
        }


def _form_hour(params: Mapping[str, Any], name: str) -> datetime | None:
    """Return the form field ``name`` as the start of a UTC hour, or None when empty.

    :param params: the run's params.
    :param name: the field.
    :raises ParamError: not a date-time, or not on the hour (names the field).
    """
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        when = (
            value
            if isinstance(value, datetime)
            else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        )
    except ValueError as exc:
        raise ParamError(
            f"form field {name!r} = {value!r} is not a date-time (2026-11-27T09:00:00Z)"
        ) from exc
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when != floor_hour(when):
        raise ParamError(f"form field {name!r} = {value!r} is not on the hour: give the hour's start (HH:00)")
    return when


def form_request(
    params: Mapping[str, Any] | None,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    *,
    run_id: str | None = None,
    user: str | None = None,
    now: datetime | None = None,
) -> ExportRequest:
    """Return what a run exports: the trigger form's clients and hours, or the run's own hour.

    Empty hour fields: the run's data interval (a scheduled run's hour; a manual run
    covers the last whole hour ending at or before its logical date). ``last_hour``
    empty: ``first_hour`` alone. Empty ``clients``: every active client.

    :param params: the run's params (``clients``, ``first_hour``, ``last_hour``,
        ``allow_shrink``, ``reason``).
    :param data_interval_start: the run's ``data_interval_start``.
    :param data_interval_end: the run's ``data_interval_end``.
    :param run_id: the run, recorded with an operator's ``allow_shrink``.
    :param user: who triggered the run, recorded with ``allow_shrink``.
    :param now: the current time (default: now), for "no hour in the future".
    :raises ParamError: a form value is invalid, naming the field (not retried).
    :raises PermanentExportError: no form hours and the run's interval is not one UTC hour.
    """
    params = params or {}
    first, last = _form_hour(params, "first_hour"), _form_hour(params, "last_hour")
    if first is None and last is not None:
        raise ParamError("form field 'last_hour' is set but 'first_hour' is empty: give the first hour too")
    if first is None:
        try:
            hours: tuple[HourInterval, ...] = (hour_of(data_interval_start, data_interval_end),)
        except ValueError as exc:
            raise PermanentExportError(f"export: {exc}") from exc
    else:
        last = last or first
        now = now or datetime.now(UTC)
        if last < first:
            raise ParamError(f"form field 'last_hour' = {last:%Y-%m-%dT%H:00Z} is before 'first_hour'")
        if last + HOUR > now:
            raise ParamError(
                f"form field 'last_hour' = {last:%Y-%m-%dT%H:00Z} has not ended yet "
                f"(now {now:%Y-%m-%dT%H:%MZ})"
            )
        count = int((last - first) / HOUR) + 1
        if count > MAX_FORM_HOURS:
            raise ParamError(
                f"form fields 'first_hour'..'last_hour' span {count} hours, more than {MAX_FORM_HOURS}: "
                "split the range"
            )
        hours = tuple(HourInterval(first + i * HOUR) for i in range(count))
    clients = _form_clients(params)
    allow = None
    if params.get("allow_shrink"):
        if clients is None or first is None:
            raise ParamError(
                "form field 'allow_shrink' needs 'clients' and 'first_hour': it applies to the hours and "
                "clients named on the form only"
            )
        reason = str(params.get("reason") or "").strip() or "no reason given"
        allow = f"run {run_id} triggered by {user or 'unknown user'}: {reason}"
    return ExportRequest(hours=hours, clients=clients, allow_shrink=allow)


def _form_clients(params: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Return the form's client ids (sorted, unique), or None when the field is empty.

    :param params: the run's params.
    :raises ParamError: an id that is not a client id (names the field and the value).
    """
    value = params.get("clients")
    if value in (None, "", []):
        return None
    items = [value] if isinstance(value, str) else list(value)
    ids = sorted({str(v).strip() for v in items if str(v).strip()})
    bad = [i for i in ids if not CLIENT_ID_RE.fullmatch(i)]
    if bad:
        raise ParamError(f"form field 'clients': {bad!r} are not client ids ({CLIENT_ID_RE.pattern})")
    return tuple(ids) or None


def _pack(rows: list[dict[str, Any]], groups: int, cost_rows: int) -> list[tuple[int, list[dict[str, Any]]]]:
    """Pack clients into at most ``groups`` bins of about equal weight (heaviest first, lightest bin).

    :param rows: the clients' plan rows (``client_id``, ``rows``).
    :param groups: the most bins.
    :param cost_rows: the row-equivalent of one client's fixed cost.
    :return: ``(weight, clients)`` per non-empty bin.
    """
    bins: list[tuple[int, int, list[dict[str, Any]]]] = [(0, i, []) for i in range(max(1, groups))]
    heapq.heapify(bins)
    for row in sorted(rows, key=lambda r: (-(int(r["rows"]) + cost_rows), r["client_id"])):
        weight, index, members = heapq.heappop(bins)
        members.append(row)
        heapq.heappush(bins, (weight + int(row["rows"]) + cost_rows, index, members))
    return [(weight, members) for weight, _index, members in sorted(bins, key=lambda b: b[1]) if members]


def plan(request: ExportRequest, *, conn_id: str = EVENTS_DB_CONN_ID) -> list[dict[str, Any]]:
    """Return the groups of a run: the clients to export, packed by their rows.

    :param request: the run's hours and clients (:func:`form_request`).
    :param conn_id: Airflow connection of the events database.
    :return: the groups as dicts (:meth:`ExportGroup.as_dict`), suspect groups last.
    :raises ParamError: a client named on the form does not exist (names it).
    """
    max_groups = max(1, int(get_setting(MAX_GROUPS.name)))
    cost_rows = max(0, int(get_setting(CLIENT_COST_ROWS.name)))
    hours = [h.start for h in request.hours]
    params = {
        "clients": list(request.clients) if request.clients else None,
        "first_start": hours[0],
        "last_end": hours[-1] + HOUR,
        "hour_starts": hours,
    }
    with connect(conn_id, autocommit=True) as conn:
        rows = as_dicts(conn.execute(load_sql("export/plan_clients.sql"), params))
    if request.clients:
        missing = sorted(set(request.clients) - {r["client_id"] for r in rows})
        if missing:
            raise ParamError(f"form field 'clients': no client {', '.join(map(repr, missing))} in clients")
    healthy = [r for r in rows if not r["suspect"]]
    suspects = [r for r in rows if r["suspect"]]
    spare = 1 if suspects and healthy and max_groups > 1 else 0
    packed = [(w, m, False) for w, m in _pack(healthy, max_groups - spare, cost_rows)]
    if suspects:
        packed += [(w, m, True) for w, m in _pack(suspects, max(1, spare), cost_rows)]
    iso = [h.isoformat() for h in hours]
    groups = [
        ExportGroup(
            index=i,
            clients=sorted(r["client_id"] for r in members),
            hours=iso,
            weight=weight,
            suspect=suspect,
            allow_shrink=request.allow_shrink,
        )
        for i, (weight, members, suspect) in enumerate(packed)
    ]
    log.info(
        "export plan: %d client(s), hour(s) %s, %d row(s) to write (+%d per client), %d group(s)%s",
        len(rows),
        ", ".join(str(h) for h in request.hours),
        sum(int(r["rows"]) for r in rows),
        cost_rows,
        len(groups),
        f"; {len(suspects)} client(s) whose latest hour failed run apart, last: "
        + ", ".join(r["client_id"] for r in suspects)
        if suspects
        else "",
    )
    for g in groups:
        log.info("export plan: %s (%d client(s), weight %d)", g.label, len(g.clients), g.weight)
    return [g.as_dict() for g in groups]


@dataclass
class GroupOutcome:
    """What a group task did, per client and hour.

    :param group: the group's label.
    :param results: ``client_id`` -> hour start (ISO) -> the export's summary, or ``{"error": ...}``.
    :param failed: ``(client_id, hour start, error)`` of each failed export.
    :param permanent: whether each failure is one no retry can fix.
    """

    group: str
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    permanent: list[bool] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The outcome as the task's return value / XCom (JSON)."""
        return {
            "group": self.group,
            "clients": self.results,
            "failed": [{"client_id": c, "interval_start": h, "error": e} for c, h, e in self.failed],
        }


def _done_in_this_run(
    conn_id: str, clients: list[str], hours: list[datetime], run_id: str
) -> set[tuple[str, str]]:
    """Return the (client, hour start ISO) pairs this run already published (an earlier try of the task).

    :param conn_id: Airflow connection of the events database.
    :param clients: the group's clients.
    :param hours: the hour starts.
    :param run_id: the Airflow run id.
    """
    with connect(conn_id, autocommit=True) as conn:
        rows = conn.execute(
            load_sql("export/published_by_run.sql"),
            {"clients": clients, "hour_starts": hours, "run_id": run_id},
        ).fetchall()
    return {(client_id, start.astimezone(UTC).isoformat()) for client_id, start in rows}


def run_group(
    group: Mapping[str, Any],
    *,
    run_id: str,
    retry: bool = False,
    on_exported: Callable[[dict[str, Any]], None] | None = None,
    conn_id: str = EVENTS_DB_CONN_ID,
) -> GroupOutcome:
    """Export a group's clients one after another; isolate each client's failure.

    :param group: a group from :func:`plan` (``label``, ``clients``, ``hours``, ``allow_shrink``).
    :param run_id: the Airflow run id (recorded in ``export_runs``).
    :param retry: a later try of the task: skip the client-hours this run already published.
    :param on_exported: called with each published client-hour's summary (the Asset event).
    :param conn_id: Airflow connection of the events database.
    :return: the outcome; call :func:`raise_for_failures` with it.
    """
    label, clients = str(group["label"]), list(group["clients"])
    hours = [HourInterval(datetime.fromisoformat(h)) for h in group["hours"]]
    outcome = GroupOutcome(label)
    shared = shared_inputs()
    done = _done_in_this_run(conn_id, clients, [h.start for h in hours], run_id) if retry else set()
    started = time.monotonic()
    for position, client_id in enumerate(clients, start=1):
        per_client = outcome.results.setdefault(client_id, {})
        for hour in hours:
            key = hour.start.isoformat()
            if (client_id, key) in done:
                per_client[key] = {"skipped": "published by an earlier try of this run"}
                log.info(
                    "export %s [%d/%d] client=%s hour=%s: published by an earlier try of this run",
                    label,
                    position,
                    len(clients),
                    client_id,
                    hour,
                )
                continue
            per_client[key] = _export_one(
                outcome, label, position, len(clients), client_id, hour, run_id, shared, group, on_exported
            )
    _log_outcome(outcome, time.monotonic() - started)
    return outcome


def _export_one(
    outcome: GroupOutcome,
    label: str,
    position: int,
    total: int,
    client_id: str,
    hour: HourInterval,
    run_id: str,
    shared: Any,
    group: Mapping[str, Any],
    on_exported: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """Export one client-hour of a group; a failure is recorded in ``outcome``, never raised.

    :param outcome: the group's outcome (failures are added to it).
    :param label: the group's label, for the log.
    :param position: the client's 1-based place in the group, for the log.
    :param total: the group's client count, for the log.
    :param client_id: the client.
    :param hour: the hour.
    :param run_id: the Airflow run id.
    :param shared: the task's :class:`~events_pipeline.export.client_hour.SharedInputs`.
    :param group: the group (``allow_shrink``).
    :param on_exported: called with the summary once the client-hour is published.
    :return: the export's summary, or ``{"error": ...}``.
    """
    t0 = time.monotonic()
    try:
        summary = export_client_hour(
            client_id,
            hour.start,
            hour.end,
            run_id=run_id,
            shared=shared,
            allow_shrink=group.get("allow_shrink"),
        )
    except Exception as exc:  # noqa: BLE001 - isolated per client; raised for all at the end
        error = " ".join(f"{type(exc).__name__}: {exc}".split())[:1000]
        outcome.failed.append((client_id, hour.start.isoformat(), error))
        outcome.permanent.append(isinstance(exc, AirflowFailException))
        log.error(
            "export %s [%d/%d] client=%s hour=%s FAILED after %.2f s (the group goes on): %s",
            label,
            position,
            total,
            client_id,
            hour,
            time.monotonic() - t0,
            error,
        )
        return {"error": error}
    log.info(
        "export %s [%d/%d] client=%s hour=%s: %s in %.2f s",
        label,
        position,
        total,
        client_id,
        hour,
        summary.get("skipped") or f"rows={summary.get('rows')} bytes={summary.get('bytes')}",
        time.monotonic() - t0,
    )
    if on_exported is not None and "skipped" not in summary:
        on_exported(summary)
    return summary


def _log_outcome(outcome: GroupOutcome, seconds: float) -> None:
    """Log one table of the group's client-hours: client, hour, rows, bytes, seconds or error.

    :param outcome: the group's outcome.
    :param seconds: the group's duration.
    """
    lines = [f"{'client':<24} {'hour':<17} {'rows':>10} {'bytes':>12} {'seconds':>8}  result"]
    for client_id, per_hour in outcome.results.items():
        for start, r in per_hour.items():
            result = "FAILED: " + r["error"][:120] if "error" in r else (r.get("skipped") or "published")
            took = f"{r['seconds']:.2f}" if isinstance(r.get("seconds"), int | float) else ""
            lines.append(
                f"{client_id:<24} {start[:16]:<17} {r.get('rows', ''):>10} {r.get('bytes', ''):>12} "
                f"{took:>8}  {result}"
            )
    log.info(
        "export %s: %d client-hour(s), %d failed, %.1f s\n%s",
        outcome.group,
        sum(len(v) for v in outcome.results.values()),
        len(outcome.failed),
        seconds,
        "\n".join(lines),
    )


def raise_for_failures(outcome: GroupOutcome) -> dict[str, Any]:
    """Return the outcome as a dict, or fail naming every failed client-hour.

    :param outcome: what :func:`run_group` returned.
    :raises PermanentGroupExportError: every failure is one no retry can fix (no retries).
    :raises GroupExportError: otherwise (the retry exports only the failed clients).
    """
    if not outcome.failed:
        return outcome.as_dict()
    names = "; ".join(f"{c} {h[:13]}Z: {e[:300]}" for c, h, e in outcome.failed[:10])
    more = f"; and {len(outcome.failed) - 10} more" if len(outcome.failed) > 10 else ""
    failed_clients = sorted({c for c, _h, _e in outcome.failed})
    text = (
        f"export {outcome.group}: {len(outcome.failed)} client-hour(s) of {len(failed_clients)} client(s) "
        f"failed ({', '.join(failed_clients)}); the others are published. {names}{more}"
    )
    if all(outcome.permanent):
        raise PermanentGroupExportError(text + " | no retry: fix the configuration, then clear this task")
    raise GroupExportError(text + " | the retry exports only these clients")


def asset_event(summary: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return the Asset URI and the event's extra for one published client-hour.

    The Asset is the client's export space (``s3://<bucket>/<prefix>``); the extra holds
    the figures of the hour: client, hour, rows, bytes, parts, both manifest keys.

    :param summary: what :func:`export_client_hour` returned.
    """
    manifest = str(summary["manifest"])
    space = manifest.rsplit("/dt=", 1)[0]
    extra = {
        "client_id": summary["client_id"],
        "interval_start": summary["interval_start"],
        "rows": summary.get("rows"),
        "bytes": summary.get("bytes"),
        "parts": summary.get("parts"),
        "manifest_key": manifest,
        "backup_manifest_key": summary.get("backup_manifest"),
    }
    return space, extra


def add_asset_events(alias_events: Any, summaries: Iterable[Mapping[str, Any]]) -> int:
    """Emit one Asset event per published client-hour through an ``AssetAlias`` outlet.

    :param alias_events: ``outlet_events[<the DAG's AssetAlias>]`` of the task's context.
    :param summaries: the published client-hours' summaries.
    :return: events added.
    """
    from airflow.sdk import Asset

    count = 0
    for summary in summaries:
        uri, extra = asset_event(summary)
        alias_events.add(Asset(uri), extra=extra)
        count += 1
    return count
