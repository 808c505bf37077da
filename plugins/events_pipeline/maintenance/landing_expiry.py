"""Landing-object expiry: the copies ingest leaves in the landing bucket are kept N days, then deleted.

Ingest moves every landing file out of ``incoming/`` into ``processed/`` (loaded),
and writes ``rejected/`` (bad lines) and ``quarantine/`` (unreadable files and their
``.error.json``) objects (contract §2.1). Each of those prefixes is kept a number of
days of its own (Airflow Variables, contract §4.3), then its objects are deleted here:

=====================  ===========================================  =======
prefix                 Variable                                     default
=====================  ===========================================  =======
``processed/``         ``events_landing_keep_processed_days``       7
``rejected/``          ``events_landing_keep_rejected_days``        30
``quarantine/``        ``events_landing_keep_quarantine_days``      30
=====================  ===========================================  =======

An object is due when its ``LastModified`` (when ingest wrote it) is older than the
prefix's days. A negative value turns the pipeline's expiry of that prefix off (for
buckets whose S3 lifecycle rule does the job; docs/maintenance.md has the rule).
``incoming/`` (the backlog) and every other prefix are never touched.

The prefixes themselves are the ingest's key layout (``ingest/landing.py``): the task
passes them in, so this module (a lower layer than nothing but ``common``) keeps none
of it, and objects are found by listing each prefix, whatever key layout lies below it.

Idempotent (deleting a deleted key is a no-op) and bounded: at most
``events_landing_expiry_max_deletes`` objects per prefix and run; what is left is
deleted by the next run (logged). Counts and bytes per prefix go to the task log and
to ``maintenance_log`` (step ``landing_expiry``). On a versioned bucket a delete leaves
the older versions: the bucket needs the lifecycle rule's ``NoncurrentVersionExpiration``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from events_pipeline.common import heap_ranges
from events_pipeline.common.db import connect
from events_pipeline.common.errors import PipelineError
from events_pipeline.common.settings import VAR_LANDING_BUCKET, Setting, get_setting, register

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SET_KEEP_PROCESSED_DAYS = register(
    Setting(
        "events_landing_keep_processed_days",
        7,
        "days a landing file is kept under processed/ after ingest moved it there (negative: never "
        "deleted by the pipeline, e.g. when an S3 lifecycle rule does it)",
    )
)
SET_KEEP_REJECTED_DAYS = register(
    Setting(
        "events_landing_keep_rejected_days",
        30,
        "days a rejected-lines object is kept under rejected/ (negative: never deleted by the pipeline)",
    )
)
SET_KEEP_QUARANTINE_DAYS = register(
    Setting(
        "events_landing_keep_quarantine_days",
        30,
        "days an unreadable file and its .error.json are kept under quarantine/ (negative: never "
        "deleted by the pipeline)",
    )
)
SET_MAX_DELETES = register(
    Setting(
        "events_landing_expiry_max_deletes",
        100_000,
        "most landing objects one events_maintenance run deletes per prefix (the next run goes on)",
    )
)

#: Objects per DeleteObjects request (the S3 maximum).
DELETE_BATCH = 1000


class LandingExpiryError(PipelineError):
    """S3 refused to delete landing objects (names the bucket, keys and S3 error codes)."""


@dataclass
class PrefixExpiry:
    """What one run did to one prefix of the landing bucket.

    :param prefix: the key prefix (``processed/``).
    :param keep_days: how many days its objects are kept (negative: expiry off).
    :param cutoff: objects last modified before it were due (None when off).
    :param deleted: objects deleted.
    :param deleted_bytes: their total size.
    :param kept: objects listed and kept (not due yet).
    :param kept_bytes: their total size.
    :param oldest_kept: ``LastModified`` of the oldest object kept (ISO-8601), if any.
    :param more_due: the run stopped at the delete bound; due objects are left for the next run.
    :param seconds: wall time spent on the prefix.
    """

    prefix: str
    keep_days: int
    cutoff: str | None = None
    deleted: int = 0
    deleted_bytes: int = 0
    kept: int = 0
    kept_bytes: int = 0
    oldest_kept: str | None = None
    more_due: bool = False
    seconds: float = 0.0


def expire_prefix(
    s3: Any, bucket: str, prefix: str, keep_days: int, *, now: datetime, max_deletes: int
) -> PrefixExpiry:
    """Delete the objects under ``prefix`` last modified more than ``keep_days`` days before ``now``.

    :param s3: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param prefix: the key prefix (``processed/``, ``rejected/``, ``quarantine/``).
    :param keep_days: days an object is kept; negative: nothing is deleted (nor listed).
    :param now: the reference time.
    :param max_deletes: most objects deleted in this call; listing stops once that many are due.
    :return: what was deleted and kept, with sizes.
    :raises LandingExpiryError: S3 refused some deletes (names the bucket, keys and codes).
    """
    t0 = time.monotonic()
    result = PrefixExpiry(prefix=prefix, keep_days=keep_days)
    if keep_days < 0:
        return result
    cutoff = now - timedelta(days=keep_days)
    result.cutoff = cutoff.isoformat()
    due: list[dict[str, Any]] = []
    oldest: datetime | None = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["LastModified"] < cutoff:
                if len(due) >= max_deletes:
                    result.more_due = True
                    break
                due.append(obj)
            else:
                result.kept += 1
                result.kept_bytes += int(obj["Size"])
                oldest = obj["LastModified"] if oldest is None else min(oldest, obj["LastModified"])
        if result.more_due:
            break
    for start in range(0, len(due), DELETE_BATCH):
        batch = due[start : start + DELETE_BATCH]
        _delete_batch(s3, bucket, [o["Key"] for o in batch])
        result.deleted += len(batch)
        result.deleted_bytes += sum(int(o["Size"]) for o in batch)
    result.oldest_kept = oldest.astimezone(UTC).isoformat() if oldest else None
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def _delete_batch(s3: Any, bucket: str, keys: list[str]) -> None:
    """Delete up to :data:`DELETE_BATCH` keys in one request; fail naming what S3 refused.

    :param s3: a boto3 S3 client.
    :param bucket: the bucket.
    :param keys: the keys (a key already gone counts as deleted).
    :raises LandingExpiryError: some keys were refused (the first few named, with their codes).
    """
    response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    errors = response.get("Errors") or []
    if errors:
        named = ", ".join(f"s3://{bucket}/{e.get('Key')} ({e.get('Code')})" for e in errors[:5])
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise LandingExpiryError(
            f"landing expiry: S3 refused to delete {len(errors)} of {len(keys)} object(s): {named}{more}; "
            f"check the delete permission of connection aws_default on bucket {bucket!r} "
            f"(Variable {VAR_LANDING_BUCKET})"
        )


def run_landing_expiry(
    s3: Any,
    bucket: str,
    keep_days: Mapping[str, int],
    *,
    now: datetime | None = None,
    max_deletes: int = 100_000,
) -> list[PrefixExpiry]:
    """Expire every prefix of ``keep_days`` in the landing bucket; log one line per prefix.

    :param s3: a boto3 S3 client.
    :param bucket: the landing bucket.
    :param keep_days: prefix -> days its objects are kept (negative: off).
    :param now: the reference time (UTC now by default).
    :param max_deletes: most objects deleted per prefix.
    :return: one result per prefix, in the order given.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    results = []
    for prefix, days in keep_days.items():
        result = expire_prefix(s3, bucket, prefix, days, now=now, max_deletes=max_deletes)
        results.append(result)
        _log_prefix(bucket, result)
    return results


def _log_prefix(bucket: str, r: PrefixExpiry) -> None:
    """Log what expiry did to one prefix (one line: counts and bytes deleted and kept).

    :param bucket: the landing bucket.
    :param r: the prefix's result.
    """
    if r.keep_days < 0:
        log.info(
            "landing expiry: s3://%s/%s: off (keep days %d), nothing deleted", bucket, r.prefix, r.keep_days
        )
        return
    log.info(
        "landing expiry: s3://%s/%s kept %d day(s) (objects before %s): deleted %d object(s), %.1f MB; "
        "kept %d object(s), %.1f MB, oldest %s; %.2fs%s",
        bucket,
        r.prefix,
        r.keep_days,
        r.cutoff,
        r.deleted,
        r.deleted_bytes / 1e6,
        r.kept,
        r.kept_bytes / 1e6,
        r.oldest_kept or "-",
        r.seconds,
        "; more objects are due: the delete bound was reached, the next run goes on" if r.more_due else "",
    )


def record(
    conn: psycopg.Connection, results: list[PrefixExpiry], *, started_at: datetime, run_id: str | None
) -> None:
    """Write one ``maintenance_log`` row per prefix (step ``landing_expiry``), in one transaction.

    :param conn: an open connection.
    :param results: the run's results.
    :param started_at: when the run started.
    :param run_id: the Airflow run id, if known.
    """
    with conn.transaction():
        for r in results:
            heap_ranges.record(
                conn,
                "landing_expiry",
                started_at=started_at,
                rows=r.deleted,
                partition=r.prefix,
                details=asdict(r),
                run_id=run_id,
            )


def keep_days_settings(processed: str, rejected: str, quarantine: str) -> dict[str, int]:
    """Return each prefix's keep days from the Airflow Variables (or their defaults).

    :param processed: the ``processed/`` prefix of the ingest's key layout.
    :param rejected: the ``rejected/`` prefix.
    :param quarantine: the ``quarantine/`` prefix.
    """
    return {
        processed: int(get_setting(SET_KEEP_PROCESSED_DAYS.name)),
        rejected: int(get_setting(SET_KEEP_REJECTED_DAYS.name)),
        quarantine: int(get_setting(SET_KEEP_QUARANTINE_DAYS.name)),
    }


def run(*, processed: str, rejected: str, quarantine: str, run_id: str | None = None) -> dict[str, Any]:
    """Task entry point: expire the three prefixes with the settings from Airflow Variables.

    :param processed: the ``processed/`` prefix (``ingest.landing.PROCESSED``).
    :param rejected: the ``rejected/`` prefix (``ingest.landing.REJECTED``).
    :param quarantine: the ``quarantine/`` prefix (``ingest.landing.QUARANTINE``).
    :param run_id: the Airflow run id, for ``maintenance_log``.
    :return: per prefix: days kept, objects and bytes deleted and kept.
    """
    from events_pipeline.common.s3 import check_bucket, s3_client

    started = datetime.now(UTC)
    bucket = str(get_setting(VAR_LANDING_BUCKET))
    keep_days = keep_days_settings(processed, rejected, quarantine)
    max_deletes = int(get_setting(SET_MAX_DELETES.name))
    client = s3_client()
    check_bucket(client, bucket, what=f"Variable {VAR_LANDING_BUCKET}")
    results = run_landing_expiry(client, bucket, keep_days, max_deletes=max_deletes)
    with connect() as conn:
        record(conn, results, started_at=started, run_id=run_id)
    return {"bucket": bucket, "prefixes": [asdict(r) for r in results]}
