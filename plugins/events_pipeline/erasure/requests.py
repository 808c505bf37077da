"""GDPR erasure requests: remove a visitor of a client from every copy the pipeline keeps.

A request (``gdpr_erasure_requests``: client, visitor) is carried out in passes; a
pass takes the client's due requests under the client's own lock (other clients'
requests go on in parallel runs) and:

1. **database** - in one transaction: deletes the visitor's events of the client from
   ``events_log``, those attributed to it and those not attributed yet on one of its
   sites (the attribution rule over ``client_domains``), in any status (pending,
   exported, archived); records the export hours and landing files those rows came
   from (``gdpr_erasure_hours``, ``gdpr_erasure_files``), the count, the audit row, and
   a tombstone (client, visitor digest) that re-attribution honours afterwards; the
   hours the backup visitor index (``backup_visitor_hours``, written by the export)
   names for the visitor's digest join the recorded hours: hours whose rows retention
   already deleted are found there;
2. **backup bucket** - purges only the recorded hours' folders
   (:class:`~events_pipeline.erasure.backup.BackupPurge`): the cost follows the
   visitor's data, not the client's history; the same hour in the client's own
   bucket is listed for the client in the audit trail, never changed. Hours exported
   before the index existed are reached only by a request's ``whole_backup`` pass;
3. **loads and exports that raced the delete** - a landing file whose load was still
   running when the delete ran has its rows deleted once the load has committed; an
   export of a purged hour that was running meanwhile makes that hour purged again;
4. **landing bucket** (all requests of the run together, under the landing lock: the
   objects hold every client's events) - every ``rejected/`` and ``quarantine/`` object
   and the ``processed/`` objects of the recorded files (plus those whose rejected
   lines held a visitor) are rewritten without the visitor's lines, or deleted when
   nothing else is left (:mod:`~events_pipeline.erasure.landing_objects`).

Then the request is ``done``: its visitor's rows of the visitor index for the purged
hours are deleted, its visitor id is cleared (the digest stays) and its
audit trail (``gdpr_erasure_audit``, one row per copy touched) is printed in the task
log. A failed pass is retried by later runs with a growing delay (``next_attempt_at``:
``events_erasure_retry_base_minutes`` doubling, at most
``events_erasure_retry_max_minutes``); after ``events_erasure_max_failures`` failures,
or at once when retrying cannot help (no such client, an unreadable backup object),
the request is ``failed``. Failed requests, and requests not done within
``events_erasure_deadline_days``, turn ``check_erasure_requests`` red.

Every step is idempotent: deletes and filters find nothing the second time, hours
and files are recorded in the delete's transaction, objects are recorded in the audit
trail before they are written, a manifest that disagrees with its object is corrected.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from events_pipeline.common.db import advisory_lock, as_dict, as_dicts, connect, load_sql
from events_pipeline.common.errors import PipelineError
from events_pipeline.common.intervals import HourInterval
from events_pipeline.common.runbook import runbook_link
from events_pipeline.common.s3 import error_code
from events_pipeline.common.settings import (
    VAR_BACKUP_BUCKET,
    VAR_LANDING_BUCKET,
    Setting,
    get_setting,
    register,
)
from events_pipeline.erasure.audit import EVENTS_TABLE, VISITOR_INDEX_TABLE, AuditTrail, format_trail, trail
from events_pipeline.erasure.backup import BackupPurge, ErasureError, UnreadableBackupError, list_keys
from events_pipeline.erasure.landing_objects import LandingPurge, purge_landing_object
from events_pipeline.erasure.matching import EventMatcher, Wanted
from events_pipeline.export.keys import TenantIsolationError
from events_pipeline.ingest.landing import QUARANTINE, REJECTED
from events_pipeline.maintenance.landing_expiry import SET_KEEP_PROCESSED_DAYS
from events_pipeline.privacy.visitor_digest import visitor_digest

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SET_RETRY_BASE_MINUTES = register(
    Setting(
        "events_erasure_retry_base_minutes",
        30,
        "delay before an erasure request that failed is tried again; doubles with each failure",
    )
)
SET_RETRY_MAX_MINUTES = register(
    Setting("events_erasure_retry_max_minutes", 720, "longest delay between two tries of an erasure request")
)
SET_MAX_FAILURES = register(
    Setting(
        "events_erasure_max_failures",
        12,
        "failed passes after which an erasure request becomes 'failed' (check_erasure_requests turns red)",
    )
)

#: A pass holds its requests this long; a pass that dies is taken over after it.
LEASE_MINUTES = 120
#: Longest wait for landing files that were loading while the visitor's rows were deleted.
LOADS_WAIT_SECONDS = 60.0
#: The lock of the landing-bucket step (its objects hold every client's events).
LANDING_LOCK = "events_pipeline.erasure.landing"


def client_lock_name(client_id: str) -> str:
    """Return the name of the advisory lock one erasure pass of a client holds.

    :param client_id: the client.
    """
    return f"events_pipeline.erasure.client.{client_id}"


class UnknownClientError(ErasureError):
    """The request names a client that is not in ``clients``: retrying cannot help."""


class ErasureRunError(PipelineError, AirflowFailException):
    """Requests failed in this run; each is retried by later runs on its own schedule (not by Airflow)."""


#: Failures that retrying cannot fix: the request becomes ``failed`` at once.
PERMANENT_ERRORS = (UnknownClientError, UnreadableBackupError, TenantIsolationError)


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed request is tried again, and when it is given up.

    :param base_minutes: delay after the first failure (doubles with each one).
    :param max_minutes: longest delay.
    :param max_failures: failures after which the request is ``failed``.
    """

    base_minutes: int = 30
    max_minutes: int = 720
    max_failures: int = 12


@dataclass(frozen=True)
class LandingLayout:
    """Where the landing bucket keeps the copies erasure searches (the ingest's key layout).

    :param bucket: the landing bucket.
    :param rejected: the ``rejected/`` prefix.
    :param quarantine: the ``quarantine/`` prefix.
    :param processed_keep_days: days ``processed/`` objects are kept (``events_landing_keep_processed_days``).
    """

    bucket: str
    rejected: str = REJECTED
    quarantine: str = QUARANTINE
    processed_keep_days: int = SET_KEEP_PROCESSED_DAYS.default


@dataclass
class ClientPass:
    """One client's due requests in one run, and what happened to them.

    :param client_id: the client.
    :param wanted: the requests (id, client, visitor).
    :param landing_done: ids of the requests whose landing step was done by an earlier pass.
    :param whole_backup: ids of the requests still owed a pass over every backup folder of the client.
    :param deleted_at: when the visitor's rows were deleted (the delete's start).
    :param rows_deleted: rows deleted in this pass.
    :param stats: counters of the backup step.
    :param hold: why the requests stay pending (a race, a load still running), if so.
    :param error: the error that failed the pass, if any.
    :param seconds: wall time of the client's steps.
    """

    client_id: str
    wanted: list[Wanted]
    landing_done: set[int] = field(default_factory=set)
    whole_backup: set[int] = field(default_factory=set)
    deleted_at: datetime | None = None
    rows_deleted: int = 0
    stats: Counter[str] = field(default_factory=Counter)
    hold: str | None = None
    error: Exception | None = None
    seconds: float = 0.0

    @property
    def ids(self) -> list[int]:
        """The request ids."""
        return [w.request_id for w in self.wanted]

    @property
    def visitors(self) -> list[str]:
        """The distinct visitors, sorted."""
        return sorted({w.visitor_id for w in self.wanted})

    def first_request(self) -> dict[str, int]:
        """Map each visitor to its first request (rows are counted there, once)."""
        first: dict[str, int] = {}
        for w in sorted(self.wanted, key=lambda w: w.request_id):
            first.setdefault(w.visitor_id, w.request_id)
        return first


def run_erasure(
    conn: psycopg.Connection,
    s3: Any,
    backup_bucket: str,
    landing: LandingLayout,
    *,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Carry out every due erasure request (one pass each).

    :param conn: an open connection (switched to autocommit; each step commits on its own).
    :param s3: a boto3 S3 client for the backup and landing buckets.
    :param backup_bucket: the backup bucket (Variable ``events_backup_bucket``).
    :param landing: the landing bucket and its layout.
    :param policy: retry delays and limit (default :class:`RetryPolicy`).
    :return: per client: requests, status, rows deleted, objects read/rewritten; the landing step's counters.
    :raises ErasureRunError: some requests failed (named with client, request and object);
        they are retried by later runs on their own schedule.
    """
    policy = policy or RetryPolicy()
    conn.autocommit = True
    passes: list[ClientPass] = []
    for client_id in [r[0] for r in conn.execute(load_sql("erasure/due_clients.sql"))]:
        with advisory_lock(conn, client_lock_name(client_id), wait=False) as acquired:
            if not acquired:
                log.info("erasure: client %s: another run holds its requests; skipped", client_id)
                continue
            one = _claim(conn, client_id)
            if one is None:
                continue
            t0 = time.monotonic()
            try:
                _client_steps(conn, s3, backup_bucket, one)
            except Exception as exc:  # noqa: BLE001 - recorded on the requests, reported below
                one.error = exc
            one.seconds = time.monotonic() - t0
            passes.append(one)
    landing_stats = _landing_step(conn, s3, landing, passes)
    failures = [line for one in passes if (line := _finish(conn, one, policy))]
    summary = {
        "clients": {one.client_id: _client_summary(one) for one in passes},
        "landing": dict(landing_stats),
    }
    if failures:
        raise ErasureRunError(
            "erasure failed for " + "; ".join(failures) + f" ({runbook_link('events_gdpr_erasure')})"
        )
    return summary


def _claim(conn: psycopg.Connection, client_id: str) -> ClientPass | None:
    """Take the client's due requests (the caller holds the client's lock).

    :param conn: an autocommit connection.
    :param client_id: the client.
    """
    rows = as_dicts(
        conn.execute(
            load_sql("erasure/claim_requests.sql"), {"client_id": client_id, "lease_minutes": LEASE_MINUTES}
        )
    )
    if not rows:
        return None
    one = ClientPass(
        client_id,
        [Wanted(int(r["request_id"]), r["client_id"], r["visitor_id"]) for r in rows],
        landing_done={int(r["request_id"]) for r in rows if r["landing_done_at"] is not None},
        whole_backup={
            int(r["request_id"]) for r in rows if r["whole_backup"] and r["whole_backup_done_at"] is None
        },
    )
    log.info("erasure: client %s: requests %s taken", client_id, one.ids)
    return one


def _client_steps(conn: psycopg.Connection, s3: Any, backup_bucket: str, one: ClientPass) -> None:
    """The client's steps of a pass: delete rows, purge the backup hours, settle races.

    :param conn: an autocommit connection.
    :param s3: a boto3 S3 client.
    :param backup_bucket: the backup bucket.
    :param one: the client's pass (filled in).
    :raises UnknownClientError: the client is not in ``clients``.
    :raises ErasureError: an S3 step failed (names the object).
    """
    if as_dict(conn.execute(load_sql("export/client_config.sql"), {"client_id": one.client_id})) is None:
        raise UnknownClientError(
            f"erasure: requests {one.ids}: client_id {one.client_id!r} is not in clients (a typo when the "
            "request was filed?): correct gdpr_erasure_requests.client_id, then set the requests pending"
        )
    sites = _client_sites_of(conn, one)
    one.deleted_at = datetime.now(UTC)
    one.rows_deleted += _delete_rows(conn, one, sites, "erasure/delete_visitor_rows.sql", {})
    scan_started = datetime.now(UTC)
    _purge_hours(conn, s3, backup_bucket, one)
    _purge_whole_backup(conn, s3, backup_bucket, one)
    _settle_loads(conn, s3, backup_bucket, one, sites)
    _settle_exports(conn, s3, backup_bucket, one, scan_started)


def _client_sites_of(conn: psycopg.Connection, one: ClientPass) -> list[str]:
    """Return the sites of the visitors' unattributed events that belong to the client (attribution rule).

    :param conn: an open connection.
    :param one: the client's pass.
    """
    sites = [
        r[0] for r in conn.execute(load_sql("erasure/unattributed_sites.sql"), {"visitors": one.visitors})
    ]
    if not sites:
        return []
    matched = conn.execute(load_sql("maintenance/match_domains.sql"), {"sites": sites}).fetchall()
    return sorted(site for site, client_id, _ in matched if client_id == one.client_id)


def _delete_rows(
    conn: psycopg.Connection, one: ClientPass, sites: list[str], sql_name: str, extra: dict[str, Any]
) -> int:
    """Delete the visitors' rows and record hours, files, counts, audit and tombstones (one transaction).

    :param conn: an autocommit connection.
    :param one: the client's pass.
    :param sites: unattributed sites of the client (:func:`_client_sites_of`).
    :param sql_name: ``delete_visitor_rows.sql`` or its file-restricted variant.
    :param extra: more parameters of that statement.
    :return: rows deleted.
    """
    first = one.first_request()
    params = {"client_id": one.client_id, "visitors": one.visitors, "sites": sites, **extra}
    with conn.transaction():
        deleted = conn.execute(load_sql(sql_name), params).fetchall()
        per_request: Counter[int] = Counter()
        hours: Counter[tuple[int, datetime]] = Counter()
        files: Counter[tuple[int, int]] = Counter()
        for visitor, export_hour, file_id in deleted:
            request_id = first[visitor]
            per_request[request_id] += 1
            if export_hour is not None:
                hours[(request_id, export_hour)] += 1
            if file_id is not None:
                files[(request_id, int(file_id))] += 1
        indexed = _record_deletion(conn, one, per_request, hours, files, first)
    log.info(
        "erasure: client %s: requests %s: %d event row(s) deleted for %d visitor(s) "
        "(%d export hour(s), %d landing file(s)); %d more backup hour(s) from the visitor index",
        one.client_id,
        one.ids,
        len(deleted),
        len(first),
        len({h for _, h in hours}),
        len({f for _, f in files}),
        len(indexed),
    )
    return len(deleted)


def _record_deletion(
    conn: psycopg.Connection,
    one: ClientPass,
    per_request: Counter[int],
    hours: Counter[tuple[int, datetime]],
    files: Counter[tuple[int, int]],
    first: dict[str, int],
) -> set[datetime]:
    """Inside the delete's transaction: record hours, files, counts, audit rows and tombstones.

    The hours to purge are those of the deleted rows and those the backup visitor index
    (``backup_visitor_hours``) names for the visitors' digests: hours whose rows
    retention already deleted are among the latter.

    :param conn: a connection inside the transaction.
    :param one: the client's pass.
    :param per_request: rows deleted per request.
    :param hours: rows per (request, export hour).
    :param files: rows per (request, landing file).
    :param first: visitor -> its first request.
    :return: the hours recorded from the visitor index only (not from the deleted rows).
    """
    if hours:
        keys = sorted(hours)
        conn.execute(
            load_sql("erasure/record_hours.sql"),
            {
                "request_ids": [k[0] for k in keys],
                "hours": [k[1] for k in keys],
                "rows": [hours[k] for k in keys],
            },
        )
    if files:
        keys_f = sorted(files)
        conn.execute(
            load_sql("erasure/record_files.sql"),
            {
                "request_ids": [k[0] for k in keys_f],
                "file_ids": [k[1] for k in keys_f],
                "rows": [files[k] for k in keys_f],
            },
        )
    for request_id in one.ids:
        conn.execute(
            load_sql("erasure/add_rows_deleted.sql"),
            {"request_id": request_id, "n": per_request.get(request_id, 0)},
        )
    if per_request:
        AuditTrail(conn).record(
            dict(per_request), bucket=None, key=EVENTS_TABLE, action="rows_deleted", detail=None
        )
    by_digest = {
        "client_id": one.client_id,
        "digests": [visitor_digest(one.client_id, v) for v in first],
        "request_ids": list(first.values()),
    }
    conn.execute(load_sql("erasure/tombstone.sql"), by_digest)
    return {r[1] for r in conn.execute(load_sql("erasure/index_hours.sql"), by_digest)}


def _purge_hours(conn: psycopg.Connection, s3: Any, backup_bucket: str, one: ClientPass) -> None:
    """Purge the backup folders of the recorded hours not purged yet; mark each one purged.

    :param conn: an autocommit connection.
    :param s3: a boto3 S3 client.
    :param backup_bucket: the backup bucket.
    :param one: the client's pass.
    :raises ErasureError: an object could not be read or written (names it and the requests).
    """
    hours = [r[0] for r in conn.execute(load_sql("erasure/hours_to_purge.sql"), {"request_ids": one.ids})]
    if not hours:
        return
    purge = BackupPurge(conn, s3, backup_bucket, one.client_id, one.wanted)
    for hour in hours:
        folder = purge.folder_of(HourInterval(hour))
        try:
            purge.run([folder])
        except ErasureError:
            raise
        except Exception as exc:
            raise ErasureError(
                f"erasure: client {one.client_id}: requests {one.ids}: backup folder "
                f"s3://{backup_bucket}/{folder}/: {_describe(exc)}"
            ) from exc
        conn.execute(load_sql("erasure/mark_hour_purged.sql"), {"request_ids": one.ids, "export_hour": hour})
    one.stats.update(purge.stats)
    one.stats["hours"] += len(hours)


def _purge_whole_backup(conn: psycopg.Connection, s3: Any, backup_bucket: str, one: ClientPass) -> None:
    """For requests that ask for it: purge every backup folder of the client (the whole history).

    The recorded hours cover the rows still in ``events_log`` and the hours of the
    backup visitor index, which the export writes since migration
    ``0100_backup_visitor_index``; a visitor's events of hours exported before that,
    and older than the client's ``retention_days``, are only found this way (cost: the
    client's whole backup, as the original design read it on every run).

    :param conn: an autocommit connection.
    :param s3: a boto3 S3 client.
    :param backup_bucket: the backup bucket.
    :param one: the client's pass.
    :raises ErasureError: an object could not be read or written (names it and the requests).
    """
    if not one.whole_backup:
        return
    wanted = [w for w in one.wanted if w.request_id in one.whole_backup]
    purge = BackupPurge(conn, s3, backup_bucket, one.client_id, wanted)
    try:
        purge.run(None)
    except ErasureError:
        raise
    except Exception as exc:
        raise ErasureError(
            f"erasure: client {one.client_id}: requests {sorted(one.whole_backup)}: whole backup "
            f"s3://{backup_bucket}/{one.client_id}/: {_describe(exc)}"
        ) from exc
    conn.execute(load_sql("erasure/mark_whole_backup_done.sql"), {"request_ids": sorted(one.whole_backup)})
    one.stats.update(purge.stats)
    log.info(
        "erasure: client %s: requests %s: whole backup history read (%d folder(s), %d object(s), "
        "%d rewritten)",
        one.client_id,
        sorted(one.whole_backup),
        purge.stats.get("folders_listed", 0),
        purge.stats.get("objects_read", 0),
        purge.stats.get("objects_rewritten", 0),
    )


def _settle_loads(
    conn: psycopg.Connection, s3: Any, backup_bucket: str, one: ClientPass, sites: list[str]
) -> None:
    """Delete the visitors' rows of landing files that were loading while the main delete ran.

    Such a load's rows were not visible to the delete. Waits up to
    :data:`LOADS_WAIT_SECONDS` for those loads to commit, deletes their rows (file by
    file, newest partitions only) and purges any export hour they were in; a load still
    running after that leaves the requests pending for the next run.

    :param conn: an autocommit connection.
    :param s3: a boto3 S3 client.
    :param backup_bucket: the backup bucket.
    :param one: the client's pass.
    :param sites: unattributed sites of the client.
    """
    assert one.deleted_at is not None
    deadline = time.monotonic() + LOADS_WAIT_SECONDS
    while True:
        loads = as_dicts(
            conn.execute(load_sql("erasure/loads_in_flight.sql"), {"deleted_at": one.deleted_at})
        )
        running = [r for r in loads if r["status"] == "claimed"]
        if not running or time.monotonic() >= deadline:
            break
        time.sleep(2.0)
    done = [r for r in loads if r["status"] != "claimed"]
    if done:
        extra = {
            "file_ids": [int(r["file_id"]) for r in done],
            "since": min(r["load_started_at"] for r in done) - timedelta(minutes=1),
        }
        found = _delete_rows(conn, one, sites, "erasure/delete_visitor_rows_of_files.sql", extra)
        one.rows_deleted += found
        if found:
            _purge_hours(conn, s3, backup_bucket, one)
    if running:
        one.hold = (
            f"landing file(s) {[int(r['file_id']) for r in running]} were still loading after "
            f"{LOADS_WAIT_SECONDS:.0f}s; their rows are deleted by the next run"
        )


def _settle_exports(
    conn: psycopg.Connection, s3: Any, backup_bucket: str, one: ClientPass, scan_started: datetime
) -> None:
    """Purge again the hours an export of the client may have written while they were purged.

    :param conn: an autocommit connection.
    :param s3: a boto3 S3 client.
    :param backup_bucket: the backup bucket.
    :param one: the client's pass.
    :param scan_started: when the backup step began.
    """
    racing = [
        r[0]
        for r in conn.execute(
            load_sql("erasure/running_exports.sql"),
            {"client_id": one.client_id, "deleted_at": one.deleted_at, "scan_started_at": scan_started},
        )
    ]
    if not racing:
        return
    reopened = [
        r[0]
        for r in conn.execute(load_sql("erasure/reopen_hours.sql"), {"request_ids": one.ids, "hours": racing})
    ]
    if not reopened:
        return
    running = [
        r[0]
        for r in conn.execute(
            load_sql("erasure/exports_running.sql"), {"client_id": one.client_id, "hours": reopened}
        )
    ]
    if running:
        one.hold = (
            f"an export of client {one.client_id} (hours {sorted(h.isoformat() for h in running)}) was "
            "running during the backup purge; those hours are purged again by the next run"
        )
        return
    _purge_hours(conn, s3, backup_bucket, one)


def _landing_step(
    conn: psycopg.Connection, s3: Any, landing: LandingLayout, passes: list[ClientPass]
) -> Counter[str]:
    """Purge the landing bucket for every request of the run whose client steps succeeded.

    One pass over ``rejected/`` and ``quarantine/`` for all of them, then the
    ``processed/`` objects of their files. Under the landing lock (objects hold every
    client's events); when another run holds it, the requests stay pending for the next run.

    :param conn: an autocommit connection.
    :param s3: a boto3 S3 client.
    :param landing: the landing bucket and its layout.
    :param passes: the run's client passes (failures and holds are recorded on them).
    :return: counters (objects read, rewritten, removed, lines removed).
    """
    ready = [one for one in passes if one.error is None]
    todo = [w for one in ready for w in one.wanted if w.request_id not in one.landing_done]
    stats: Counter[str] = Counter()
    if not todo:
        return stats
    with advisory_lock(conn, LANDING_LOCK, wait=False) as acquired:
        if not acquired:
            for one in ready:
                one.hold = one.hold or "another run was purging the landing bucket; done by the next run"
            return stats
        try:
            held = _purge_landing(conn, s3, landing, todo, stats, ready)
        except Exception as exc:  # noqa: BLE001 - recorded on each concerned request by _finish
            error = exc if isinstance(exc, ErasureError) else ErasureError(f"erasure: {_describe(exc)}")
            for one in ready:
                if any(w.request_id not in one.landing_done for w in one.wanted):
                    one.error = error
            return stats
    finished = [w.request_id for w in todo if w.request_id not in held]
    if finished:
        conn.execute(load_sql("erasure/mark_landing_done.sql"), {"request_ids": finished})
    for one in ready:
        waiting = [i for i in one.ids if i in held]
        if waiting and not one.hold:
            one.hold = (
                f"landing file(s) of requests {waiting} are not in processed/ yet (loaded, move pending); "
                "their objects are purged by the next run"
            )
    return stats


def _purge_landing(
    conn: psycopg.Connection,
    s3: Any,
    landing: LandingLayout,
    todo: list[Wanted],
    stats: Counter[str],
    ready: list[ClientPass],
) -> set[int]:
    """Purge ``rejected/``, the requests' ``processed/`` objects and ``quarantine/``.

    :param conn: an autocommit connection.
    :param s3: a boto3 S3 client.
    :param landing: the landing bucket and its layout.
    :param todo: the requests to carry out in the landing bucket.
    :param stats: counters (filled in).
    :param ready: the client passes (for the clients' retention).
    :return: ids of requests that must wait: a file of theirs has not been moved to processed/ yet.
    :raises ErasureError: an object could not be read or written (names it).
    """
    from events_pipeline.attribution.domains import load_domain_map

    matcher = EventMatcher(todo, load_domain_map(conn))
    audit = AuditTrail(conn)
    bucket = landing.bucket
    ids = [w.request_id for w in todo]
    rejected_hits = [
        key
        for key in list_keys(s3, bucket, landing.rejected)
        if (outcome := _purge_one(s3, bucket, key, matcher, audit, stats)) and outcome.action
    ]
    held: set[int] = set()
    processed: set[str] = set()
    rows = as_dicts(
        conn.execute(
            load_sql("erasure/landing_files_of_requests.sql"), {"request_ids": ids, "bucket": bucket}
        )
    )
    for r in rows:
        if r["status"] in ("claimed", "loaded") or r["moved_at"] is None:
            held.add(int(r["request_id"]))
        elif r["status"] == "processed" and r["processed_key"]:
            processed.add(r["processed_key"])
    if rejected_hits:
        for r in as_dicts(
            conn.execute(
                load_sql("erasure/landing_files_of_rejected.sql"), {"bucket": bucket, "keys": rejected_hits}
            )
        ):
            if r["status"] == "processed" and r["processed_key"]:
                processed.add(r["processed_key"])
    processed |= _files_past_retention(conn, landing, {w.client_id for w in todo}, ready)
    for key in sorted(processed):
        _purge_one(s3, bucket, key, matcher, audit, stats)
    for key in list_keys(s3, bucket, landing.quarantine):
        _purge_one(s3, bucket, key, matcher, audit, stats)
    log.info(
        "erasure: landing bucket s3://%s for requests %s: %d object(s) read (%d processed/), %d rewritten, "
        "%d removed, %d line(s) removed",
        bucket,
        ids,
        stats["objects_read"],
        len(processed),
        stats["objects_rewritten"],
        stats["objects_removed"],
        stats["lines_removed"],
    )
    return held


def _files_past_retention(
    conn: psycopg.Connection, landing: LandingLayout, clients: set[str], ready: list[ClientPass]
) -> set[str]:
    """``processed/`` keys of files whose rows a short client retention may have deleted already.

    Only for clients whose ``retention_days`` is below the days ``processed/`` objects
    are kept: their files of that window are read too (their rows, and so their file
    ids, may be gone while the objects still hold the visitor's lines).

    :param conn: an open connection.
    :param landing: the landing layout (bucket, processed keep days).
    :param clients: the clients of the requests.
    :param ready: the client passes.
    """
    keys: set[str] = set()
    if landing.processed_keep_days < 0:
        return keys
    now = datetime.now(UTC)
    for client_id in sorted(clients):
        row = conn.execute(load_sql("erasure/client_retention.sql"), {"client_id": client_id}).fetchone()
        if row is None or int(row[0]) >= landing.processed_keep_days:
            continue
        for r in as_dicts(
            conn.execute(
                load_sql("erasure/landing_files_past_retention.sql"),
                {
                    "bucket": landing.bucket,
                    "client_id": client_id,
                    "since": now - timedelta(days=landing.processed_keep_days, hours=1),
                    "until": now - timedelta(days=int(row[0])) + timedelta(hours=1),
                },
            )
        ):
            if r["processed_key"]:
                keys.add(r["processed_key"])
    return keys


def _purge_one(
    s3: Any, bucket: str, key: str, matcher: EventMatcher, audit: AuditTrail, stats: Counter[str]
) -> LandingPurge | None:
    """Purge one landing object, naming it when S3 fails.

    :param s3: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param key: the object's key.
    :param matcher: the requests' visitors.
    :param audit: the audit trail (the object is recorded before it is written).
    :param stats: counters (filled in).
    :raises ErasureError: reading or writing the object failed (names it).
    """
    try:
        outcome = purge_landing_object(s3, bucket, key, matcher, audit=audit)
    except Exception as exc:
        raise ErasureError(f"erasure: landing object s3://{bucket}/{key}: {_describe(exc)}") from exc
    if outcome is None:
        return None
    stats["objects_read"] += 1
    stats["bytes_read"] += outcome.bytes_before
    if outcome.action == "rewritten":
        stats["objects_rewritten"] += 1
    elif outcome.action == "removed":
        stats["objects_removed"] += 1
    stats["lines_removed"] += sum(outcome.removed.values())
    if outcome.action:
        log.info(
            "erasure: %s s3://%s/%s: %d line(s) of requests %s removed, %d left%s",
            outcome.action,
            bucket,
            key,
            sum(outcome.removed.values()),
            sorted(outcome.removed),
            outcome.lines_left,
            f" ({outcome.detail})" if outcome.detail else "",
        )
    return outcome


def _describe(exc: Exception) -> str:
    """One line for an exception: its S3 error code when it has one, its type and message.

    :param exc: the exception.
    """
    code = error_code(exc)
    return f"{type(exc).__name__}{f' {code}' if code else ''}: {exc}"


def _finish(conn: psycopg.Connection, one: ClientPass, policy: RetryPolicy) -> str | None:
    """Record the outcome of a client's pass: done, pending again, or a failure with its retry time.

    :param conn: an autocommit connection.
    :param one: the client's pass.
    :param policy: retry delays and limit.
    :return: one line for the run's error when the pass failed, else None.
    """
    if one.error is not None:
        return _record_failure(conn, one, policy)
    if one.hold is not None:
        conn.execute(
            load_sql("erasure/requeue.sql"), {"request_ids": one.ids, "minutes": 0, "note": one.hold}
        )
        log.warning("erasure: client %s: requests %s stay pending: %s", one.client_id, one.ids, one.hold)
        return None
    with conn.transaction():
        forgotten = _forget_visitor_hours(conn, one)
        conn.execute(load_sql("erasure/finish_done.sql"), {"request_ids": one.ids})
    log.info(
        "erasure: client %s: requests %s done: %d event row(s) deleted; backup: %d hour(s), %d object(s) "
        "read, %d rewritten, %d manifest(s) updated; %d visitor index row(s) deleted; %.2fs",
        one.client_id,
        one.ids,
        one.rows_deleted,
        one.stats.get("hours", 0),
        one.stats.get("objects_read", 0),
        one.stats.get("objects_rewritten", 0),
        one.stats.get("manifests_updated", 0),
        forgotten,
        one.seconds,
    )
    for request_id in one.ids:
        log.info("erasure: audit trail of request %d:\n%s", request_id, format_trail(trail(conn, request_id)))
    return None


def _forget_visitor_hours(conn: psycopg.Connection, one: ClientPass) -> int:
    """Delete the requests' visitors' rows of the backup visitor index for the hours now purged.

    Those rows name hours that no longer hold the visitor (the tombstone keeps the
    digest); the deletion is one audit row per request (table ``backup_visitor_hours``).

    :param conn: a connection inside the transaction that marks the requests done.
    :param one: the client's pass.
    :return: index rows deleted.
    """
    per_request = Counter(
        int(r[0])
        for r in conn.execute(load_sql("erasure/forget_visitor_hours.sql"), {"request_ids": one.ids})
    )
    if per_request:
        AuditTrail(conn).record(
            dict(per_request), bucket=None, key=VISITOR_INDEX_TABLE, action="rows_deleted", detail=None
        )
    return sum(per_request.values())


def _record_failure(conn: psycopg.Connection, one: ClientPass, policy: RetryPolicy) -> str:
    """Record a failed pass on its requests: ``failed`` when it cannot help or too often, else backoff.

    :param conn: an autocommit connection.
    :param one: the client's pass (with its error).
    :param policy: retry delays and limit.
    :return: one line naming the client, the requests, the error and what happens next.
    """
    assert one.error is not None
    message = _describe(one.error) if not isinstance(one.error, PipelineError) else str(one.error)
    permanent = isinstance(one.error, PERMANENT_ERRORS)
    rows = as_dicts(
        conn.execute(
            load_sql("erasure/record_failure.sql"),
            {
                "request_ids": one.ids,
                "error": message[:2000],
                "permanent": permanent,
                "max_failures": policy.max_failures,
                "retry_base_minutes": policy.base_minutes,
                "retry_max_minutes": policy.max_minutes,
            },
        )
    )
    states = []
    for r in rows:
        if r["status"] == "failed":
            states.append(f"request {r['request_id']} failed after {r['failures']} failure(s)")
        else:
            states.append(
                f"request {r['request_id']} retried from {r['next_attempt_at']:%Y-%m-%dT%H:%M}Z "
                f"(failure {r['failures']} of {policy.max_failures})"
            )
    log.error("erasure: client %s: %s; %s", one.client_id, message, "; ".join(states))
    return f"client {one.client_id}: {message} [{'; '.join(states)}]"


def _client_summary(one: ClientPass) -> dict[str, Any]:
    """The task's summary of one client's pass (no visitor ids).

    :param one: the client's pass.
    """
    status = "failed" if one.error else ("pending" if one.hold else "done")
    return {"requests": one.ids, "status": status, "rows_deleted": one.rows_deleted, **dict(one.stats)}


def retry_policy() -> RetryPolicy:
    """Return the retry policy from the Airflow Variables (or their defaults)."""
    return RetryPolicy(
        base_minutes=int(get_setting(SET_RETRY_BASE_MINUTES.name)),
        max_minutes=int(get_setting(SET_RETRY_MAX_MINUTES.name)),
        max_failures=int(get_setting(SET_MAX_FAILURES.name)),
    )


def landing_layout(bucket: str) -> LandingLayout:
    """Return the landing bucket's layout: the ingest's prefixes, ``processed/``'s keep days.

    :param bucket: the landing bucket (Variable ``events_landing_bucket``).
    """
    return LandingLayout(
        bucket=bucket,
        rejected=REJECTED,
        quarantine=QUARANTINE,
        processed_keep_days=int(get_setting(SET_KEEP_PROCESSED_DAYS.name)),
    )


def run() -> dict[str, Any]:
    """Task entry point: carry out the due requests with the buckets and settings from Airflow Variables."""
    from events_pipeline.common.s3 import s3_client

    backup_bucket = str(get_setting(VAR_BACKUP_BUCKET))
    landing = landing_layout(str(get_setting(VAR_LANDING_BUCKET)))
    policy = retry_policy()
    client = s3_client()
    with connect() as conn:
        return run_erasure(conn, client, backup_bucket, landing, policy=policy)
