"""Retention: delete exported events ``retention_days`` (per client) after ``processed_at``.

Archived events (never exported: unattributed, or their client's export never took
them; contract §6.2) are deleted ``events_archived_keep_days`` (7) days after archival
made them archived, i.e. ``events_archive_after_days`` + that many days after
``created_at`` (negative: archived events are never deleted). So a day whose exported
rows have all expired holds nothing needed any more and its partition is dropped,
instead of surviving for ever for its ~1 % unattributed rows.

Partition by partition (``events_log`` is range-partitioned by UTC day of
``created_at``), never one table-wide DELETE
(docs/decisions/maintenance-retention-partitions.md):

- **skip** a partition with nothing to delete (most of them, cheaply: only days
  old enough for the smallest retention are even looked at);
- **drop** a partition whose rows are all expired: DETACH + DROP, a catalog
  change instead of millions of row deletions (no WAL per row, no bloat);
- **swap** a partition where only a few rows survive (archived, still pending,
  a client with a longer retention): copy the survivors into a fresh table,
  then DETACH + DROP the old one and ATTACH the new one under the same name;
- **batch** when many rows survive (or for the DEFAULT partition): bounded
  DELETEs over slices of heap blocks, each committed on its own.

The DROP of the old partition runs in its own transaction after the DETACH
(or swap) committed. The rows are gone from ``events_log`` within milliseconds;
then unlinking the files gives the disk back to the OS (~0.35 s per GB of
page-cache-resident files, kernel time). PostgreSQL unlinks after releasing its
locks in any case; the second transaction makes the two phases visible in the
log and the benchmark (``detached_s``, ``drop_s``, ``bytes_freed``). A crash in
between leaves a detached table ``<partition>_expired`` that the next run drops first.

Locks: the day's partition is locked EXCLUSIVE while survivors are copied (it
blocks writers of *that old day* only; readers and ingest into today's
partition go on). DETACH needs ACCESS EXCLUSIVE on ``events_log`` for a few
milliseconds; it is taken with ``lock_timeout`` (default 500 ms, below
PostgreSQL's 1 s ``deadlock_timeout``) and retried with backoff, so ingest never
waits more than the timeout, and when retention meets erasure or an export
holding the parent, retention is the side that backs off (no deadlock, no lost
work). ``DETACH ... CONCURRENTLY`` is not possible: events_log has a DEFAULT partition.

Billing gate: a row is only deleted when both its ``created_at`` day and its
export hour's day are covered by ``billing_runs`` (contiguously), so retention
never removes anything billing has not rolled up.

Publication gate: a row is only deleted when its export hour is published, i.e.
``export_runs`` holds a ``succeeded`` row for ``(client_id, export_hour)``. Rows
an export marked but whose manifest was never written (the run failed after its
marking commit) stay until that hour is published; otherwise a later re-run
would publish the hour without them (contract §6.1). A row marked ``exported``
without an ``export_hour`` has no published hour and is never deleted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from events_pipeline.common import heap_ranges
from events_pipeline.common.db import connect, load_sql
from events_pipeline.common.errors import PipelineError
from events_pipeline.common.heap_ranges import SET_BATCH_BLOCKS
from events_pipeline.common.partitions import DEFAULT_PARTITION, PARENT, day_bounds, existing_partitions
from events_pipeline.common.settings import Setting, get_setting, register
from events_pipeline.maintenance.archival import SET_ARCHIVE_AFTER_DAYS

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SET_LOCK_TIMEOUT_MS = register(
    Setting(
        "events_retention_lock_timeout_ms",
        500,
        "longest wait (ms) for a lock on events_log during retention before backing off and retrying",
    )
)
SET_SWAP_MAX_SURVIVOR_RATIO = register(
    Setting(
        "events_retention_swap_max_survivor_ratio",
        0.25,
        "a partition is rebuilt (survivors copied, old one dropped) when at most this share of rows "
        "survives; above it expired rows are deleted in bounded batches",
    )
)

SET_ARCHIVED_KEEP_DAYS = register(
    Setting(
        "events_archived_keep_days",
        7,
        "days an archived event is kept once archival could take it (events_archive_after_days after "
        "created_at), then retention deletes it; negative: archived events are never deleted",
    )
)

#: Defaults of the two settings, for callers that pass none.
DEFAULT_ARCHIVE_AFTER_DAYS = 30
DEFAULT_ARCHIVED_KEEP_DAYS = 7

#: Attempts at taking the ACCESS EXCLUSIVE lock before giving up (task retries later).
LOCK_ATTEMPTS = 8


class RetentionLockError(PipelineError):
    """The lock needed to swap or drop a partition could not be taken (busy table)."""


@dataclass
class PartitionResult:
    """What retention did to one partition.

    :param partition: the partition table name.
    :param mode: ``skip``, ``deferred`` (becomes a swap on the next run), ``drop``, ``swap`` or ``batch``.
    :param total: rows in the partition before.
    :param deleted: rows deleted.
    :param kept: rows kept.
    :param seconds: wall time spent.
    :param lock_wait_s: longest wait for a lock on the parent (swap/drop only).
    :param lock_attempts: attempts needed to take that lock.
    :param copy_s: seconds spent counting and copying survivors (swap/drop only).
    :param proof: the index-only proof showed every row deletable (no heap scan).
    :param estimated: ``total``/``deleted`` are the planner's estimate (large proven drop).
    :param detached_s: seconds until the expired rows were gone from ``events_log``
        (the DETACH transaction committed and released its locks).
    :param drop_s: seconds spent dropping the detached table afterwards (the files
        are unlinked and the disk space goes back to the OS; no lock on ``events_log``).
    :param bytes_freed: on-disk size of the dropped table (heap, indexes, TOAST).
    """

    partition: str
    mode: str
    total: int = 0
    deleted: int = 0
    kept: int = 0
    seconds: float = 0.0
    lock_wait_s: float = 0.0
    lock_attempts: int = 0
    copy_s: float = 0.0
    proof: bool = False
    estimated: bool = False
    detached_s: float = 0.0
    drop_s: float = 0.0
    bytes_freed: int = 0


@dataclass
class RetentionResult:
    """Outcome of one retention pass.

    :param billed_through: the last billed day (the gate), or None.
    :param partitions: one result per partition looked at.
    :param archived_cutoff: archived rows created before it are deleted (None: kept).
    """

    billed_through: date | None
    partitions: list[PartitionResult] = field(default_factory=list)
    archived_cutoff: datetime | None = None

    @property
    def deleted(self) -> int:
        """Rows deleted in total."""
        return sum(p.deleted for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (the task's return value)."""
        return {
            "billed_through": self.billed_through.isoformat() if self.billed_through else None,
            "archived_cutoff": self.archived_cutoff.isoformat() if self.archived_cutoff else None,
            "deleted": self.deleted,
            "partitions": [p.__dict__ for p in self.partitions if p.mode != "skip"],
            "deferred": [p.partition for p in self.partitions if p.mode == "deferred"],
        }


def billed_through(conn: psycopg.Connection) -> date | None:
    """Return the last day billing covers without a gap (None: nothing billed yet).

    :param conn: an open connection.
    """
    row = conn.execute(load_sql("maintenance/billed_through.sql")).fetchone()
    return row[0] if row else None


def client_cutoffs(conn: psycopg.Connection, now: datetime) -> dict[str, datetime]:
    """Map each client to the ``processed_at`` before which its exported rows expire.

    :param conn: an open connection.
    :param now: the reference time.
    """
    rows = conn.execute("SELECT client_id, retention_days FROM clients").fetchall()
    return {cid: now - timedelta(days=int(days)) for cid, days in rows}


def archived_cutoff(now: datetime, archive_after_days: int, keep_days: int) -> datetime | None:
    """Return the ``created_at`` before which archived events are deleted (None: never).

    :param now: the reference time.
    :param archive_after_days: ``events_archive_after_days`` (pending this long: archived).
    :param keep_days: ``events_archived_keep_days``; negative keeps archived events for ever.
    """
    if keep_days < 0:
        return None
    return now - timedelta(days=max(archive_after_days, 0) + keep_days)


def _params(
    cutoffs: dict[str, datetime], billed_end: datetime, archived_before: datetime | None = None
) -> dict[str, Any]:
    return {
        "client_ids": list(cutoffs),
        "cutoffs": list(cutoffs.values()),
        "billed_end": billed_end,
        "archived_cutoff": archived_before,
    }


#: Partitions of at most this many blocks are counted exactly; larger ones are sampled.
EXACT_STATS_MAX_BLOCKS = 2000
#: Share of blocks sampled (TABLESAMPLE SYSTEM) to choose between swap and batch.
SAMPLE_PERCENT = 2.0


def _any_deletable(
    conn: psycopg.Connection, partition: str, params: dict[str, Any], day: date | None = None
) -> bool:
    """Exact: does ``partition`` hold a row retention may delete now?

    First the index bound (``retention_may_expire.sql``: milliseconds; archived rows
    are probed only in a partition that starts before their cutoff), then an
    ``EXISTS`` probe that stops at the first deletable row.
    """
    from psycopg import sql

    ident = sql.Identifier(partition)
    cutoff = params.get("archived_cutoff")
    probe = cutoff is not None and (day is None or day_bounds(day)[0] < cutoff)
    may = sql.SQL(load_sql("maintenance/retention_may_expire.sql")).format(partition=ident)
    if not conn.execute(may, {**params, "archived_probe": probe}).fetchone()[0]:  # type: ignore[index]
        return False
    query = sql.SQL(load_sql("maintenance/retention_any_deletable.sql")).format(partition=ident)
    return bool(conn.execute(query, params).fetchone()[0])  # type: ignore[index]


def _stats(conn: psycopg.Connection, partition: str, params: dict[str, Any]) -> tuple[int, int, int]:
    """Return ``(rows, deletable now, deletable a day later)``: exact when small, else from a block sample."""
    from psycopg import sql

    sample = sql.SQL("")
    if heap_ranges.relation_blocks(conn, partition) > EXACT_STATS_MAX_BLOCKS:
        sample = sql.SQL("TABLESAMPLE SYSTEM ({}) REPEATABLE (42)").format(sql.Literal(SAMPLE_PERCENT))
    query = sql.SQL(load_sql("maintenance/retention_stats.sql")).format(
        partition=sql.Identifier(partition), sample=sample
    )
    total, deletable, deletable_next = conn.execute(query, params).fetchone()  # type: ignore[misc]
    return int(total), int(deletable), int(deletable_next)


@dataclass(frozen=True)
class _Options:
    """The settings of one retention pass (see :func:`run_retention`)."""

    lock_timeout_ms: int
    swap_max_survivor_ratio: float
    batch_blocks: int
    force_mode: str | None
    run_id: str | None


def run_retention(
    conn: psycopg.Connection,
    now: datetime | None = None,
    *,
    lock_timeout_ms: int = 500,
    swap_max_survivor_ratio: float = 0.25,
    batch_blocks: int = heap_ranges.DEFAULT_BATCH_BLOCKS,
    force_mode: str | None = None,
    run_id: str | None = None,
    archive_after_days: int = DEFAULT_ARCHIVE_AFTER_DAYS,
    archived_keep_days: int = DEFAULT_ARCHIVED_KEEP_DAYS,
) -> RetentionResult:
    """Delete every expired exported event and every archived one past its keep days, partition by partition.

    :param conn: an open connection (switched to autocommit: each step commits on its own).
    :param now: the reference time (UTC now by default).
    :param lock_timeout_ms: longest wait for a lock on ``events_log`` per attempt.
    :param swap_max_survivor_ratio: rebuild a partition when at most this share survives.
    :param batch_blocks: heap blocks per bounded DELETE batch.
    :param force_mode: ``"batch"`` or ``"swap"`` to force a mode (benchmarks).
    :param run_id: the Airflow run id, for ``maintenance_log``.
    :param archive_after_days: ``events_archive_after_days``.
    :param archived_keep_days: ``events_archived_keep_days`` (negative: archived events are kept).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    conn.autocommit = True
    drop_detached_leftovers(conn)
    gate = billed_through(conn)
    result = RetentionResult(
        billed_through=gate, archived_cutoff=archived_cutoff(now, archive_after_days, archived_keep_days)
    )
    if gate is None:
        log.warning("retention: billing_runs is empty, nothing is deleted until billing has run")
        return result
    billed_end = day_bounds(gate)[1]
    cutoffs = client_cutoffs(conn, now)
    if not cutoffs:
        log.info("retention: no clients, nothing to do")
        return result
    options = _Options(lock_timeout_ms, swap_max_survivor_ratio, batch_blocks, force_mode, run_id)
    params = _params(cutoffs, billed_end, result.archived_cutoff)
    for day, name in _targets(conn, gate, cutoffs, billed_end, result.archived_cutoff):
        result.partitions.append(_retain_partition(conn, day, name, params, options))
    log.info("retention: %d row(s) deleted in total", result.deleted)
    return result


def _targets(
    conn: psycopg.Connection,
    gate: date,
    cutoffs: dict[str, datetime],
    billed_end: datetime,
    archived_before: datetime | None = None,
) -> list[tuple[date | None, str]]:
    """The partitions to look at: daily ones old enough for some row to expire, then the DEFAULT one.

    :param conn: an open connection.
    :param gate: the last billed day (for the log line).
    :param cutoffs: each client's expiry cutoff (:func:`client_cutoffs`).
    :param billed_end: the end of the last billed day.
    :param archived_before: archived rows created before it are deleted (None: kept).
    :return: ``(day, partition)`` pairs, oldest first; the DEFAULT partition's day is None.
    """
    latest = max(cutoffs.values())
    if archived_before is not None:
        latest = max(latest, archived_before)
    horizon = min(latest, billed_end)
    candidates = [
        (day, name) for day, name in sorted(existing_partitions(conn).items()) if day_bounds(day)[0] < horizon
    ]
    log.info(
        "retention: billed through %s, %d client(s), archived rows created before %s deleted, "
        "%d daily partition(s) old enough to look at",
        gate,
        len(cutoffs),
        archived_before.isoformat() if archived_before else "never",
        len(candidates),
    )
    return [*candidates, (None, DEFAULT_PARTITION)]


def _retain_partition(
    conn: psycopg.Connection, day: date | None, name: str, params: dict[str, Any], options: _Options
) -> PartitionResult:
    """Apply retention to one partition: skip, defer, drop, swap or delete in batches; log and record it.

    :param conn: an autocommit connection.
    :param day: the partition's day (None: the DEFAULT partition).
    :param name: the partition's table name.
    :param params: the query parameters of :func:`_params`.
    :param options: the pass's settings.
    """
    started = datetime.now(UTC)
    t0 = time.monotonic()
    part = PartitionResult(partition=name, mode="skip")
    if _any_deletable(conn, name, params, day):
        mode, estimates = _choose_mode(conn, day, name, params, options)
        if mode == "deferred":
            part.mode = "deferred"
            log.info(
                "retention: %s deferred to the next run: ~%d of ~%d rows expired now, ~%d tomorrow",
                name,
                estimates[1],
                estimates[0],
                estimates[2],
            )
        elif mode == "swap":
            assert day is not None
            _swap_partition(conn, name, day, params, options.lock_timeout_ms, part)
        else:
            part.mode = "batch"
            part.deleted = _delete_in_batches(conn, name, params, options.batch_blocks)
    part.seconds = round(time.monotonic() - t0, 3)
    if part.mode not in ("skip", "deferred"):
        _log_partition(part)
        with conn.transaction():
            heap_ranges.record(
                conn,
                "retention",
                started_at=started,
                rows=part.deleted,
                partition=name,
                details={k: v for k, v in part.__dict__.items() if k != "partition"},
                run_id=options.run_id,
            )
    return part


def _choose_mode(
    conn: psycopg.Connection, day: date | None, name: str, params: dict[str, Any], options: _Options
) -> tuple[str, tuple[int, int, int]]:
    """Choose how to delete the expired rows of a partition that has some.

    A daily partition where few rows survive is swapped (or dropped); one that
    is partly expired today but nearly all tomorrow (the day after the oldest
    dropped one) is deferred: deleting part of it row by row now would cost WAL
    for nothing, tomorrow's run swaps it (rows are at most one run late). The
    rest, and the DEFAULT partition, are deleted in batches.

    :param conn: an autocommit connection.
    :param day: the partition's day (None: the DEFAULT partition).
    :param name: the partition's table name.
    :param params: the query parameters of :func:`_params`.
    :param options: the pass's settings (``force_mode`` overrides the choice for daily partitions).
    :return: ``deferred``, ``swap`` or ``batch``, and the estimated
        ``(rows, deletable now, deletable a day later)``.
    """
    if day is not None and options.force_mode is None and _provably_all_deletable(conn, name, day, params):
        # Nothing survives (index-only proof, re-checked under the lock): no estimate needed.
        estimates = (1, 1, 1)
    else:
        estimates = (0, 0, 0) if day is None else _stats(conn, name, params)
    est_total, est_now, est_next = estimates
    ratio = options.swap_max_survivor_ratio
    few_survivors = est_total - est_now <= ratio * est_total
    use_swap = day is not None and few_survivors
    defer = day is not None and not few_survivors and est_total - est_next <= ratio * est_total
    if options.force_mode is not None and day is not None:
        use_swap, defer = options.force_mode == "swap", False
    if defer:
        return "deferred", estimates
    return ("swap" if use_swap else "batch"), estimates


def _log_partition(part: PartitionResult) -> None:
    """Log what retention did to a partition it changed (one line with its figures).

    :param part: the partition's result.
    """
    rate = part.deleted / part.seconds if part.seconds else 0.0
    log.info(
        "retention: %s mode=%s%s deleted=%s%d kept=%d in %.2fs (%.0f rows/s; rows gone after "
        "%.3fs, then %.1f MB returned to the OS in %.3fs), longest parent-lock wait %.3fs over "
        "%d attempt(s)",
        part.partition,
        part.mode,
        " (index-only proof)" if part.proof else "",
        "~" if part.estimated else "",
        part.deleted,
        part.kept,
        part.seconds,
        rate,
        part.detached_s,
        part.bytes_freed / 1e6,
        part.drop_s,
        part.lock_wait_s,
        part.lock_attempts,
    )


def _delete_in_batches(
    conn: psycopg.Connection, partition: str, params: dict[str, Any], batch_blocks: int
) -> int:
    """Delete the expired rows of ``partition`` slice by slice, one commit per slice."""
    from psycopg import sql

    query = sql.SQL(load_sql("maintenance/retention_delete_batch.sql")).format(
        partition=sql.Identifier(partition)
    )
    deleted = 0
    for lo, hi in heap_ranges.block_ranges(heap_ranges.relation_blocks(conn, partition), batch_blocks):
        deleted += int(conn.execute(query, {**params, "lo": lo, "hi": hi}).fetchone()[0])  # type: ignore[index]
    return deleted


def _provably_all_deletable(conn: psycopg.Connection, name: str, day: date, params: dict[str, Any]) -> bool:
    """Index-only proof that every row of partition ``name`` (day ``day``) may be deleted now.

    See ``include/sql/maintenance/retention_proof_all_deletable.sql`` for the rules
    and the export contract it relies on. False means "not proven", never "keep".
    """
    from psycopg import sql

    if day_bounds(day)[1] > params["billed_end"]:
        return False
    query = sql.SQL(load_sql("maintenance/retention_proof_all_deletable.sql")).format(
        partition=sql.Identifier(name)
    )
    return bool(conn.execute(query, params).fetchone()[0])  # type: ignore[index]


#: Suffix of a partition detached by retention and waiting to be dropped.
EXPIRED_SUFFIX = "_expired"


def drop_detached(conn: psycopg.Connection, table: str) -> int:
    """Drop ``table``, a partition retention already detached; return its size in bytes.

    Its own transaction (the files are unlinked at commit; the table is no
    longer related to ``events_log``). Idempotent (a table already gone is 0 bytes).

    :param conn: an autocommit connection.
    :param table: the detached table's name (``events_log_pYYYYMMDD_expired``).
    """
    from psycopg import sql

    with conn.transaction():
        row = conn.execute("SELECT pg_total_relation_size(to_regclass(%s))", (table,)).fetchone()
        size = int(row[0]) if row and row[0] is not None else 0
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    return size


def drop_detached_leftovers(conn: psycopg.Connection) -> list[str]:
    """Drop tables an interrupted retention run detached but did not drop yet.

    Their rows already left ``events_log`` when the DETACH committed.

    :param conn: an autocommit connection.
    """
    names = [r[0] for r in conn.execute(load_sql("maintenance/retention_detached_leftovers.sql"))]
    for name in names:
        size = drop_detached(conn, name)
        log.warning(
            "retention: dropped %s (%.1f MB), detached by an earlier run that stopped before dropping it",
            name,
            size / 1e6,
        )
    return names


#: Partitions the planner estimates above this many rows are not counted exactly
#: before a proven drop; their deleted count in the log is the estimate.
EXACT_COUNT_MAX_ROWS = 100_000


def _row_count(conn: psycopg.Connection, name: str, part: PartitionResult) -> int:
    """Rows of partition ``name``: the planner's estimate when large, else an exact count."""
    from psycopg import sql

    estimate = conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (name,)).fetchone()
    if estimate and estimate[0] is not None and estimate[0] > EXACT_COUNT_MAX_ROWS:
        part.estimated = True
        return int(estimate[0])
    return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()[0])  # type: ignore[index]


def _swap_partition(
    conn: psycopg.Connection,
    name: str,
    day: date,
    params: dict[str, Any],
    lock_timeout_ms: int,
    part: PartitionResult,
) -> None:
    """Copy the survivors of ``name`` into a new table, then replace (or just drop) the partition.

    The swap or detach runs in one transaction (:func:`_detach_expired`); on a
    lock timeout everything is rolled back and retried after a backoff, up to
    :data:`LOCK_ATTEMPTS` times. The old partition leaves that transaction
    detached and renamed ``<name>_expired``; it is dropped in a second
    transaction (:func:`drop_detached`), so the time until the rows were gone and
    the time spent unlinking files (most of a whole-day drop) are measured apart.
    A crash in between leaves the renamed table; the next run drops it first.

    :param conn: an autocommit connection.
    :param name: the partition's table name.
    :param day: the partition's day.
    :param params: the query parameters of :func:`_params`.
    :param lock_timeout_ms: longest wait for each lock, per attempt.
    :param part: the partition's result, filled in here.
    :raises RetentionLockError: no attempt got its locks (nothing was changed).
    """
    import psycopg

    t_start = time.monotonic()
    delay = 0.2
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        part.lock_attempts = attempt
        try:
            with conn.transaction():
                total, kept = _detach_expired(conn, name, day, params, lock_timeout_ms, part)
            part.detached_s = round(time.monotonic() - t_start, 3)
            part.total, part.kept, part.deleted = total, kept, total - kept
            t_drop = time.monotonic()
            part.bytes_freed = drop_detached(conn, f"{name}{EXPIRED_SUFFIX}")
            part.drop_s = round(time.monotonic() - t_drop, 3)
            return
        except psycopg.errors.LockNotAvailable:
            log.warning(
                "retention: %s: lock not granted within %d ms (attempt %d/%d), retrying in %.1fs",
                name,
                lock_timeout_ms,
                attempt,
                LOCK_ATTEMPTS,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    raise RetentionLockError(
        f"retention: could not lock partition {name} / table {PARENT} within {lock_timeout_ms} ms in "
        f"{LOCK_ATTEMPTS} attempts (long-running queries on {PARENT}?); nothing was changed, the task retries"
    )


def _detach_expired(
    conn: psycopg.Connection,
    name: str,
    day: date,
    params: dict[str, Any],
    lock_timeout_ms: int,
    part: PartitionResult,
) -> tuple[int, int]:
    """Inside the swap transaction: lock, copy the survivors, DETACH and rename the old partition.

    The old partition becomes ``<name>_expired``; the survivors' table, if any
    row survives, is attached under the old name (mode ``swap``), else the day
    is simply gone (mode ``drop``).

    :param conn: a connection inside the swap transaction.
    :param name: the partition's table name.
    :param day: the partition's day.
    :param params: the query parameters of :func:`_params`.
    :param lock_timeout_ms: longest wait for each lock.
    :param part: the partition's result (gets ``proof``, ``copy_s``, ``lock_wait_s``, ``mode``).
    :return: ``(rows before, rows kept)``.
    :raises psycopg.errors.LockNotAvailable: a lock was not granted in time.
    """
    from psycopg import sql

    ident, parent = sql.Identifier(name), sql.Identifier(PARENT)
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_ms}ms")))
    # Writers of this old day wait (briefly); readers and ingest do not.
    conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(ident))
    # Proven from indexes: no scan at all. Otherwise one scan copies the survivors.
    t_copy = time.monotonic()
    part.proof = _provably_all_deletable(conn, name, day, params)
    kept = 0 if part.proof else _copy_survivors(conn, name, day, params)
    # Rows before: exact on small partitions; on large ones the planner's
    # estimate (an exact count reads ~0.25 s per million rows), logged with ~.
    total = max(_row_count(conn, name, part), kept)
    part.copy_s = round(time.monotonic() - t_copy, 3)
    t_lock = time.monotonic()
    conn.execute(sql.SQL("ALTER TABLE {parent} DETACH PARTITION {p}").format(parent=parent, p=ident))
    part.lock_wait_s = max(part.lock_wait_s, round(time.monotonic() - t_lock, 3))
    conn.execute(
        sql.SQL("ALTER TABLE {p} RENAME TO {x}").format(p=ident, x=sql.Identifier(f"{name}{EXPIRED_SUFFIX}"))
    )
    if kept:
        _attach_survivors(conn, name, day)
        part.mode = "swap"
    else:
        part.mode = "drop"
    return total, kept


def _copy_survivors(conn: psycopg.Connection, name: str, day: date, params: dict[str, Any]) -> int:
    """Copy the rows of ``name`` that survive into a new table ``<name>_swap``, in one scan.

    The new table has the parent's columns, defaults, constraints and indexes,
    and the day's bound as a CHECK (so ATTACH needs no scan). When no row
    survives it is dropped again and 0 returned.

    :param conn: a connection inside the swap transaction.
    :param name: the partition's table name.
    :param day: the partition's day.
    :param params: the query parameters of :func:`_params`.
    :return: rows copied.
    """
    from psycopg import sql

    start, end = day_bounds(day)
    new_ident = sql.Identifier(f"{name}_swap")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(new_ident))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {new} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
        ).format(new=new_ident, parent=sql.Identifier(PARENT))
    )
    conn.execute(
        sql.SQL("ALTER TABLE {new} ADD CONSTRAINT {c} CHECK (created_at >= {s} AND created_at < {e})").format(
            new=new_ident, c=sql.Identifier(f"{name}_bound"), s=sql.Literal(start), e=sql.Literal(end)
        )
    )
    copy_sql = sql.SQL(load_sql("maintenance/retention_copy_survivors.sql")).format(
        partition=sql.Identifier(name), target=new_ident
    )
    kept = conn.execute(copy_sql, params).rowcount
    if not kept:
        conn.execute(sql.SQL("DROP TABLE {}").format(new_ident))
    return kept


def _attach_survivors(conn: psycopg.Connection, name: str, day: date) -> None:
    """Rename ``<name>_swap`` to ``name`` and attach it as the day's partition.

    :param conn: a connection inside the swap transaction (the old partition detached and renamed).
    :param name: the partition's table name.
    :param day: the partition's day.
    """
    from psycopg import sql

    start, end = day_bounds(day)
    ident, parent = sql.Identifier(name), sql.Identifier(PARENT)
    conn.execute(
        sql.SQL("ALTER TABLE {new} RENAME TO {p}").format(new=sql.Identifier(f"{name}_swap"), p=ident)
    )
    conn.execute(
        sql.SQL("ALTER TABLE {parent} ATTACH PARTITION {p} FOR VALUES FROM ({s}) TO ({e})").format(
            parent=parent, p=ident, s=sql.Literal(start), e=sql.Literal(end)
        )
    )


def run(run_id: str | None = None) -> dict[str, Any]:
    """Task entry point: retention with the settings from Airflow Variables.

    :param run_id: the Airflow run id, for ``maintenance_log``.
    """
    with connect() as conn:
        return run_retention(
            conn,
            lock_timeout_ms=int(get_setting(SET_LOCK_TIMEOUT_MS.name)),
            swap_max_survivor_ratio=float(get_setting(SET_SWAP_MAX_SURVIVOR_RATIO.name)),
            batch_blocks=int(get_setting(SET_BATCH_BLOCKS.name)),
            run_id=run_id,
            archive_after_days=int(get_setting(SET_ARCHIVE_AFTER_DAYS.name)),
            archived_keep_days=int(get_setting(SET_ARCHIVED_KEEP_DAYS.name)),
        ).as_dict()
