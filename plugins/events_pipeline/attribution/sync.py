"""Attribution sync: resolve unattributed sites through the pixel management service.

One run (``events_attribution_sync``, every 5 minutes):

1. takes the distinct sites of unattributed pending events created within
   ``events_attribution_lookback_hours``, normalised (:func:`normalize_site`),
   minus the sites ``client_domains`` already matches (their rows only wait for
   re-attribution) and minus the negative cache (sites answered 404, or with an
   answer that could not be applied, within ``events_attribution_negative_ttl_minutes``);
   the sites with the most events first, at most ``events_attribution_max_sites_per_run``;
2. fills the rest of that quota with mappings the service gave more than
   ``events_attribution_refresh_minutes`` ago (so a domain the service moves to
   another client is noticed);
3. asks the service about each (:mod:`events_pipeline.attribution.pixel_management`)
   and records each answer in its own transaction, deciding with
   :func:`decide` (docs/attribution.md, "What an answer does");
4. hands the unexported rows of a moved domain back to re-attribution
   (``include/sql/attribution/release_moved_rows.sql``);
5. records the run in ``attribution_sync_runs`` (``check_attribution_sync`` reads it).

Ingest never calls any of this: it attributes with ``client_domains`` only.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from events_pipeline.attribution.domains import DomainMatcher, load_domain_map, normalize_site
from events_pipeline.attribution.pixel_management import (
    DEFERRED,
    ERROR,
    FOUND,
    MALFORMED,
    NOT_FOUND,
    PIXEL_CONN_ID,
    Answer,
    RetryPolicy,
    ServiceConfig,
    ServiceRefusedError,
    load_config,
    resolve_sites,
)
from events_pipeline.common.db import advisory_lock, connect, load_sql
from events_pipeline.common.errors import SettingError
from events_pipeline.common.settings import Setting, get_setting, register

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: Session advisory lock held by a sync run (a second run at the same time does nothing).
LOCK_NAME = "events_pipeline.attribution_sync"
#: Source values of ``client_domains.source``.
SOURCE_SERVICE = "pixel_management"
SOURCE_MANUAL = "manual"
#: Problem kinds of ``attribution_sync_problems``.
UNKNOWN_CLIENT = "unknown_client"
MOVE = "move"
WITHDRAWN = "withdrawn"
#: How long after a move its domain's rows loaded with the old mapping are still handed over.
MOVE_FOLLOW_UP_MINUTES = 60
#: Days of sync runs and expired negative-cache entries kept.
KEEP_DAYS = 7
#: What the service can be asked about: a host name as ``client_domains`` can store it.
_ASKABLE = re.compile(r"^[^\s:/?#@\\%]{1,253}$")

# --- settings (Airflow Variables; AIRFLOW_VAR_<NAME> works) --------------------

LOOKBACK_HOURS = register(
    Setting(
        "events_attribution_lookback_hours",
        24,
        "the sync asks about sites of unattributed events created this many hours back",
    )
)
NEGATIVE_TTL_MINUTES = register(
    Setting(
        "events_attribution_negative_ttl_minutes",
        60,
        "a site the service answered 404 for (or whose answer was not applied) is asked again after this",
    )
)
CONCURRENCY = register(
    Setting("events_attribution_concurrency", 8, "requests to the pixel management service in parallel")
)
TIMEOUT_SECONDS = register(
    Setting("events_attribution_timeout_seconds", 5.0, "timeout of one request to the service, seconds")
)
MAX_RETRIES = register(
    Setting(
        "events_attribution_max_retries",
        3,
        "retries of one site after a 5xx, 408, 429, timeout or connection error (exponential backoff)",
    )
)
BACKOFF_SECONDS = register(
    Setting("events_attribution_backoff_seconds", 0.5, "first retry delay, seconds; doubles per retry")
)
MAX_RETRY_AFTER_SECONDS = register(
    Setting(
        "events_attribution_max_retry_after_seconds",
        60.0,
        "longest 429 Retry-After the sync waits for; longer means: ask again next run",
    )
)
MAX_SITES_PER_RUN = register(
    Setting("events_attribution_max_sites_per_run", 500, "sites asked about per sync run at most")
)
REFRESH_MINUTES = register(
    Setting(
        "events_attribution_refresh_minutes",
        1440,
        "a mapping the service gave is asked again after this many minutes (0: never)",
    )
)
RUN_BUDGET_SECONDS = register(
    Setting(
        "events_attribution_run_budget_seconds",
        180.0,
        "no new request starts after this many seconds of a sync run (the rest waits for the next run)",
    )
)
SYNC_MAX_AGE_MINUTES = register(
    Setting(
        "events_attribution_sync_max_age_minutes",
        30,
        "check_attribution_sync fails when the last sync without errors is older than this",
    )
)


@dataclass(frozen=True)
class SyncSettings:
    """The Variables a sync run reads, validated.

    :param lookback_hours: age of the unattributed events whose sites are asked about.
    :param negative_ttl_minutes: how long a 404 (or an answer not applied) is remembered.
    :param concurrency: parallel requests.
    :param policy: timeout, retries, backoff, Retry-After cap.
    :param max_sites: sites asked per run.
    :param refresh_minutes: age of a service mapping before it is asked again (0: never).
    :param budget_s: seconds after which no new request starts.
    """

    lookback_hours: int = 24
    negative_ttl_minutes: int = 60
    concurrency: int = 8
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_sites: int = 500
    refresh_minutes: int = 1440
    budget_s: float = 180.0

    @classmethod
    def from_variables(cls) -> SyncSettings:
        """Read and check every setting; a bad value fails naming its Variable.

        :raises SettingError: a value out of range (names the Variable and the range).
        """
        values = {
            s.name: get_setting(s.name)
            for s in (
                LOOKBACK_HOURS,
                NEGATIVE_TTL_MINUTES,
                CONCURRENCY,
                TIMEOUT_SECONDS,
                MAX_RETRIES,
                BACKOFF_SECONDS,
                MAX_RETRY_AFTER_SECONDS,
                MAX_SITES_PER_RUN,
                REFRESH_MINUTES,
                RUN_BUDGET_SECONDS,
            )
        }
        ranges = {
            LOOKBACK_HOURS.name: (1, 24 * 60),
            NEGATIVE_TTL_MINUTES.name: (0, 60 * 24 * 365),
            CONCURRENCY.name: (1, 64),
            TIMEOUT_SECONDS.name: (0.05, 300),
            MAX_RETRIES.name: (0, 10),
            BACKOFF_SECONDS.name: (0, 300),
            MAX_RETRY_AFTER_SECONDS.name: (0, 3600),
            MAX_SITES_PER_RUN.name: (1, 100_000),
            REFRESH_MINUTES.name: (0, 60 * 24 * 365),
            RUN_BUDGET_SECONDS.name: (1, 3600),
        }
        for name, (low, high) in ranges.items():
            if not low <= values[name] <= high:
                raise SettingError(
                    f"Airflow Variable {name!r} = {values[name]!r} is out of range [{low}, {high}]"
                )
        return cls(
            lookback_hours=values[LOOKBACK_HOURS.name],
            negative_ttl_minutes=values[NEGATIVE_TTL_MINUTES.name],
            concurrency=values[CONCURRENCY.name],
            policy=RetryPolicy(
                timeout_s=float(values[TIMEOUT_SECONDS.name]),
                max_retries=values[MAX_RETRIES.name],
                backoff_s=float(values[BACKOFF_SECONDS.name]),
                max_retry_after_s=float(values[MAX_RETRY_AFTER_SECONDS.name]),
            ),
            max_sites=values[MAX_SITES_PER_RUN.name],
            refresh_minutes=values[REFRESH_MINUTES.name],
            budget_s=float(values[RUN_BUDGET_SECONDS.name]),
        )


# --- what an answer does (pure) ------------------------------------------------


@dataclass(frozen=True)
class Current:
    """The mapping of a domain in ``client_domains`` when its answer arrives.

    :param client_id: the mapped client.
    :param source: ``manual`` or ``pixel_management``.
    """

    client_id: str
    source: str


@dataclass(frozen=True)
class Decision:
    """What recording one answer does.

    :param outcome: ``mapped``, ``confirmed``, ``moved``, ``not_found``, ``problem``,
        ``unchanged`` (a manual mapping the service agrees with), ``error`` or ``deferred``.
    :param problem: the problem kind recorded, if any.
    :param applied: whether ``client_domains`` changes (insert or move).
    :param cache: reason stored in the negative cache, if the site is to be left alone for the TTL.
    :param message: one line for the log, naming the domain and the client ids.
    """

    outcome: str
    problem: str | None = None
    applied: bool = False
    cache: str | None = None
    message: str = ""


def decide(answer: Answer, current: Current | None, client_known: bool) -> Decision:
    """Decide what an answer does to ``client_domains`` (docs/attribution.md).

    - a known client for an unmapped domain: mapped (source ``pixel_management``);
    - the mapped client again: confirmed (a service mapping gets a new ``resolved_at``);
    - another known client for a domain the **service** mapped: a move, applied and recorded;
    - another client for a domain an **operator** mapped (``manual``): recorded, not applied;
    - a client ``clients`` does not know, or a malformed body: recorded, not applied;
    - 404 for an unmapped domain: negative cache; for a service mapping: recorded
      (``withdrawn``), the mapping is kept.

    :param answer: the service's answer about ``answer.site`` (the domain).
    :param current: the domain's mapping now, or ``None``.
    :param client_known: whether ``answer.client_id`` is a row of ``clients``.
    """
    domain = answer.site
    mapped = f"mapped to {current.client_id} ({current.source})" if current else "not mapped"
    if answer.kind in (ERROR, DEFERRED):
        return Decision(answer.kind, message=f"domain {domain}: no answer ({answer.detail})")
    if answer.kind == NOT_FOUND:
        if current is not None and current.source == SOURCE_SERVICE:
            return Decision(
                "problem",
                WITHDRAWN,
                cache=WITHDRAWN,
                message=f"domain {domain}: the service no longer knows it (404) but it is {mapped}: "
                "mapping kept, not applied",
            )
        return Decision(
            "not_found", cache=NOT_FOUND, message=f"domain {domain}: unknown to the service (404)"
        )
    if answer.kind == MALFORMED:
        return Decision(
            "problem",
            MALFORMED,
            cache=MALFORMED,
            message=f"domain {domain}: malformed answer ({answer.detail}); {mapped}: not applied",
        )
    if answer.kind != FOUND or answer.client_id is None:  # pragma: no cover - kinds are closed
        raise ValueError(f"unexpected answer kind {answer.kind!r} for {domain}")
    client = answer.client_id
    if not client_known:
        return Decision(
            "problem",
            UNKNOWN_CLIENT,
            cache=UNKNOWN_CLIENT,
            message=f"domain {domain}: the service answered client {client}, which is not in clients; "
            f"{mapped}: not applied",
        )
    if current is None:
        return Decision("mapped", applied=True, message=f"domain {domain} -> client {client} (new mapping)")
    if current.client_id == client:
        if current.source == SOURCE_SERVICE:
            return Decision("confirmed", message=f"domain {domain} -> client {client} (confirmed)")
        return Decision("unchanged", message=f"domain {domain} -> client {client} (manual mapping agrees)")
    if current.source == SOURCE_SERVICE:
        return Decision(
            "moved",
            MOVE,
            applied=True,
            message=f"domain {domain} moved from client {current.client_id} to client {client} by the "
            "service: mapping changed; rows not yet exported go to the new client, exported rows stay",
        )
    return Decision(
        "problem",
        MOVE,
        cache=MOVE,
        message=f"domain {domain}: the service answered client {client} but it is {mapped}: "
        "manual mapping kept, not applied",
    )


def askable(site: str | None) -> bool:
    """Whether a normalised site can be asked about (and stored in ``client_domains``).

    :param site: a normalised site (``None`` for none).
    """
    return bool(
        site
        and _ASKABLE.match(site)
        and not site.startswith(".")
        and ".." not in site
        and not site.endswith(".")
    )


# --- the run ------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What one sync run did.

    :param sync_run_id: its ``attribution_sync_runs`` row (``None`` when it did not run).
    :param counts: outcome -> number of sites.
    :param sites_asked: sites asked about (waiting + refresh).
    :param sites_waiting: unattributed sites still without an answer after the run.
    :param rows_released: rows of moved domains handed to re-attribution.
    :param error_sample: the first per-site error, for the health check.
    :param matched_locally: waiting sites ``client_domains`` already matches (e.g. an operator's
        new mapping): their rows need re-attribution, not the service.
    :param reattribute: whether re-attribution should run now.
    """

    sync_run_id: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    sites_asked: int = 0
    sites_waiting: int = 0
    rows_released: int = 0
    error_sample: str | None = None
    matched_locally: int = 0
    reattribute: bool = False

    def status(self) -> str:
        """``ok`` without per-site errors, else ``errors``."""
        return "errors" if self.counts["error"] else "ok"

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able values (the task's XCom)."""
        return {
            "sync_run_id": self.sync_run_id,
            "status": self.status() if self.sync_run_id is not None else "not run",
            "sites_asked": self.sites_asked,
            "sites_waiting": self.sites_waiting,
            "rows_released": self.rows_released,
            "matched_locally": self.matched_locally,
            "reattribute": self.reattribute,
            **{k: int(v) for k, v in sorted(self.counts.items())},
        }


class _MappedMeanwhileError(Exception):
    """The domain got a mapping between the lock and the insert: roll back, decide again."""


def waiting_sites(conn: psycopg.Connection, settings: SyncSettings) -> tuple[list[tuple[str, int]], int, int]:
    """Return the unattributed sites worth asking about, most events first, and what was left out.

    :param conn: an open connection.
    :param settings: lookback and TTL.
    :return: ``([(site, events)], unaskable, matched)`` - every candidate (not yet cut to the
        run's quota), the sites that cannot be asked about, and the sites ``client_domains``
        already matches (their rows only wait for re-attribution).
    """
    rows = conn.execute(
        load_sql("attribution/waiting_sites.sql"),
        {"lookback_hours": settings.lookback_hours, "ttl_minutes": settings.negative_ttl_minutes},
    ).fetchall()
    events: Counter[str] = Counter()
    unaskable = 0
    for raw, n in rows:
        site = normalize_site(raw)
        if not askable(site):
            unaskable += 1
            continue
        assert site is not None
        events[site] += int(n)
    if not events:
        return [], unaskable, 0
    matcher = DomainMatcher(load_domain_map(conn))
    unmatched = [s for s in events if not matcher.match(s).client_id]
    matched = len(events) - len(unmatched)
    cached = {
        r[0]
        for r in conn.execute(
            load_sql("attribution/negative_cached.sql"),
            {"sites": unmatched, "ttl_minutes": settings.negative_ttl_minutes},
        )
    }
    ordered = sorted(((s, events[s]) for s in unmatched if s not in cached), key=lambda x: (-x[1], x[0]))
    return ordered, unaskable, matched


def refresh_candidates(conn: psycopg.Connection, settings: SyncSettings, limit: int) -> list[str]:
    """Return the service mappings due to be asked again, oldest answer first.

    :param conn: an open connection.
    :param settings: refresh age and TTL.
    :param limit: at most this many.
    """
    if settings.refresh_minutes <= 0 or limit <= 0:
        return []
    rows = conn.execute(
        load_sql("attribution/refresh_candidates.sql"),
        {
            "refresh_minutes": settings.refresh_minutes,
            "ttl_minutes": settings.negative_ttl_minutes,
            "limit": limit,
        },
    )
    return [r[0] for r in rows]


def record_answer(conn: psycopg.Connection, answer: Answer, *, run_id: str | None = None) -> Decision:
    """Record one answer in its own transaction (mapping, negative cache, problem).

    :param conn: an autocommit connection.
    :param answer: the service's answer; ``answer.site`` is the domain.
    :param run_id: the Airflow run id, kept with a problem.
    :return: the decision taken.
    """
    domain = answer.site
    if answer.kind in (ERROR, DEFERRED):
        return decide(answer, None, False)
    for _ in range(3):
        try:
            with conn.transaction():
                row = conn.execute(load_sql("attribution/lock_domain.sql"), {"domain": domain}).fetchone()
                current = Current(row[0], row[1]) if row else None
                known = answer.kind == FOUND and (
                    conn.execute(
                        load_sql("attribution/client_known.sql"), {"client_id": answer.client_id}
                    ).fetchone()
                    is not None
                )
                decision = decide(answer, current, known)
                _apply(conn, decision, answer, current, run_id)
            return decision
        except _MappedMeanwhileError:
            continue
    raise RuntimeError(f"domain {domain}: its mapping kept changing while the answer was recorded")


def _apply(
    conn: psycopg.Connection,
    decision: Decision,
    answer: Answer,
    current: Current | None,
    run_id: str | None,
) -> None:
    """Carry out ``decision`` inside the caller's transaction.

    :param conn: the connection, inside the answer's transaction.
    :param decision: what :func:`decide` chose.
    :param answer: the answer (its site is the domain).
    :param current: the domain's mapping when the answer arrived (locked).
    :param run_id: the Airflow run id, kept with a problem.
    :raises _MappedMeanwhileError: the domain got a mapping since the lock (decide again).
    """
    domain = answer.site
    if decision.outcome == "mapped":
        inserted = conn.execute(
            load_sql("attribution/insert_mapping.sql"), {"domain": domain, "client_id": answer.client_id}
        ).fetchone()
        if inserted is None:
            raise _MappedMeanwhileError(domain)
    elif decision.outcome == "confirmed":
        conn.execute(
            load_sql("attribution/confirm_mapping.sql"), {"domain": domain, "client_id": answer.client_id}
        )
    elif decision.outcome == "moved":
        assert current is not None
        moved = conn.execute(
            load_sql("attribution/move_mapping.sql"),
            {"domain": domain, "old_client_id": current.client_id, "new_client_id": answer.client_id},
        ).fetchone()
        if moved is None:  # pragma: no cover - the row is locked; kept as a guard
            raise _MappedMeanwhileError(domain)
    if decision.outcome in ("mapped", "confirmed", "moved", "unchanged"):
        conn.execute(load_sql("attribution/forget_unknown.sql"), {"site": domain})
        conn.execute(load_sql("attribution/close_problems.sql"), {"domain": domain})
    if decision.cache:
        conn.execute(load_sql("attribution/remember_unknown.sql"), {"site": domain, "reason": decision.cache})
    if decision.problem:
        conn.execute(
            load_sql("attribution/record_problem.sql"),
            {
                "kind": decision.problem,
                "domain": domain,
                "current_client_id": current.client_id if current else None,
                "answered_client_id": answer.client_id,
                "applied": decision.applied,
                "detail": decision.message,
                "run_id": run_id,
            },
        )


def release_moved_rows(conn: psycopg.Connection) -> int:
    """Hand the unexported rows of recently moved domains to re-attribution; return how many.

    :param conn: an autocommit connection (the statement is one transaction).
    """
    total = 0
    rows = conn.execute(
        load_sql("attribution/release_moved_rows.sql"), {"window_minutes": MOVE_FOLLOW_UP_MINUTES}
    ).fetchall()
    for _problem_id, domain, old_client, new_client, n in rows:
        log.error(
            "attribution sync: domain %s moved from client %s to client %s: %d unexported row(s) of %s "
            "handed to re-attribution (exported rows untouched)",
            domain,
            old_client,
            new_client,
            n,
            old_client,
        )
        total += int(n)
    return total


def sync(
    conn: psycopg.Connection,
    config: ServiceConfig,
    settings: SyncSettings,
    *,
    run_id: str | None = None,
) -> SyncReport:
    """One sync run: choose sites, ask the service, record answers, release moved rows.

    :param conn: a connection (switched to autocommit: each answer is one transaction).
    :param config: where the service is.
    :param settings: the run's settings.
    :param run_id: the Airflow run id, for the records.
    :raises ServiceRefusedError: the service refused the credentials (the run is recorded as aborted).
    """
    conn.autocommit = True
    report = SyncReport()
    with advisory_lock(conn, LOCK_NAME, wait=False) as acquired:
        if not acquired:
            log.warning("attribution sync: another sync run holds lock %r; this run does nothing", LOCK_NAME)
            return report
        started = time.monotonic()
        report.sync_run_id = conn.execute(
            load_sql("attribution/start_run.sql"), {"run_id": run_id}
        ).fetchone()[0]
        error: str | None = None
        status: str | None = None
        try:
            conn.execute(
                load_sql("attribution/prune.sql"),
                {"keep_days": KEEP_DAYS, "ttl_minutes": settings.negative_ttl_minutes},
            )
            waiting, unaskable, matched = waiting_sites(conn, settings)
            chosen = [s for s, _ in waiting[: settings.max_sites]]
            refresh = refresh_candidates(conn, settings, settings.max_sites - len(chosen))
            log.info(
                "attribution sync: %d unattributed site(s) to ask (%d asked now, the most events first), "
                "%d mapping(s) to refresh, %d site(s) not askable (IP literals, odd characters), "
                "%d site(s) already matched by client_domains (re-attribution only); "
                "service %s (connection %r)",
                len(waiting),
                len(chosen),
                len(refresh),
                unaskable,
                matched,
                config.base_url,
                config.conn_id,
            )
            report.sites_asked = len(chosen) + len(refresh)
            report.matched_locally = matched
            settled = _ask_and_record(conn, config, settings, chosen + refresh, report, run_id)
            report.sites_waiting = len([s for s, _ in waiting if s not in settled])
            report.rows_released = release_moved_rows(conn)
            status = report.status()
        except ServiceRefusedError as exc:
            error, status = str(exc), "aborted"
            raise
        except Exception as exc:
            error, status = f"{type(exc).__name__}: {exc}", "aborted"
            raise
        finally:
            _finish(conn, report, status or "aborted", error)
        report.reattribute = report.matched_locally > 0 or bool(
            conn.execute(
                load_sql("attribution/needs_reattribution.sql"), {"sync_run_id": report.sync_run_id}
            ).fetchone()[0]
        )
        log.info(
            "attribution sync run %d: %s; %d site(s) still waiting; %d row(s) of moved domains released; "
            "re-attribution %s; %.2f s",
            report.sync_run_id,
            ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "nothing to ask",
            report.sites_waiting,
            report.rows_released,
            "needed" if report.reattribute else "not needed",
            time.monotonic() - started,
        )
    return report


def _ask_and_record(
    conn: psycopg.Connection,
    config: ServiceConfig,
    settings: SyncSettings,
    sites: list[str],
    report: SyncReport,
    run_id: str | None,
) -> set[str]:
    """Ask about ``sites`` and record every answer; return the sites that got a final answer.

    :param conn: an autocommit connection.
    :param config: where the service is.
    :param settings: concurrency, retry policy and budget.
    :param sites: the sites to ask about, most important first.
    :param report: the run's report, counted into.
    :param run_id: the Airflow run id.
    """
    settled: set[str] = set()
    answers = resolve_sites(
        config, sites, policy=settings.policy, concurrency=settings.concurrency, budget_s=settings.budget_s
    )
    # closing(): when recording fails, the workers stop at once instead of asking on
    with closing(answers):
        for answer in answers:
            decision = record_answer(conn, answer, run_id=run_id)
            report.counts[decision.outcome] += 1
            if decision.outcome not in ("error", "deferred"):
                settled.add(answer.site)
            if decision.outcome == "error":
                report.error_sample = report.error_sample or decision.message
                log.warning("attribution sync: %s", decision.message)
            elif decision.problem:
                log.error("attribution sync: %s", decision.message)
            elif decision.outcome != "deferred":
                log.info("attribution sync: %s", decision.message)
    return settled


def _finish(conn: psycopg.Connection, report: SyncReport, status: str, error: str | None) -> None:
    """Record the end of the run (best effort: a failure here is logged, not raised).

    :param conn: an autocommit connection.
    :param report: the run's report.
    :param status: ``ok``, ``errors`` or ``aborted``.
    :param error: why the run stopped, for ``aborted``.
    """
    c = report.counts
    try:
        conn.execute(
            load_sql("attribution/finish_run.sql"),
            {
                "sync_run_id": report.sync_run_id,
                "status": status,
                "sites_asked": report.sites_asked,
                "mapped": c["mapped"],
                "confirmed": c["confirmed"] + c["unchanged"],
                "moved": c["moved"],
                "not_found": c["not_found"],
                "problems": c["problem"],
                "errors": c["error"],
                "deferred": c["deferred"],
                "rows_released": report.rows_released,
                "sites_waiting": report.sites_waiting,
                "error_sample": report.error_sample,
                "error": (error or "")[:2000] or None,
            },
        )
    except Exception:  # the run's own error matters more; the row stays 'running'
        log.exception("attribution sync: could not record the end of run %s", report.sync_run_id)


# --- task entry points ------------------------------------------------------------


def run(run_id: str | None = None, conn_id: str = PIXEL_CONN_ID) -> dict[str, Any]:
    """Task entry point: skip without the connection, else one sync run.

    :param run_id: the Airflow run id.
    :param conn_id: the service's Airflow connection.
    :raises AirflowSkipException: the connection is not defined (the sync is off).
    """
    from airflow.sdk.exceptions import AirflowSkipException

    config = load_config(conn_id)
    if config is None:
        message = (
            f"Airflow connection {conn_id!r} is not defined: attribution sync is off (ingest attributes with "
            f"client_domains only); define it to resolve unknown sites, see docs/attribution.md"
        )
        log.info(message)
        raise AirflowSkipException(message)
    settings = SyncSettings.from_variables()
    with connect(autocommit=True) as conn:
        return sync(conn, config, settings, run_id=run_id).as_dict()


def mark_reattributed(sync_run_id: int) -> None:
    """Record that re-attribution ran after the sync runs up to ``sync_run_id``.

    :param sync_run_id: the sync run whose changes re-attribution has now applied.
    """
    with connect(autocommit=True) as conn:
        conn.execute(load_sql("attribution/mark_reattributed.sql"), {"sync_run_id": sync_run_id})
