"""The demo's past hours: landing files loaded before Airflow starts, dated back into closed hours.

Why: ``events_log.created_at`` is the load time, and an hourly export takes the
rows created before its hour's end. Demo files loaded by Airflow's ingest on a
first ``make run`` all belong to the *current* hour, so the first export runs
(the catch-up of the hours between the DAGs' start date and now) would publish
empty hours and the first Parquet file would appear up to an hour later.

So ``make run`` loads :func:`devtools.demo_data.history_files` (one file per closed
hour) *before* the scheduler starts, through the same ingest code the
``events_ingest`` DAG runs (claim, validate, attribute, COPY, move), and then
dates each file's load back to the minute it stands for
(:func:`date_back_loads`): its rows' ``created_at``, its registry timestamps
and its billing day move by the same amount, as if the collector had delivered
it then. The catch-up export runs then find those rows and deliver Parquet
within the first minutes. When the pixel management service is configured, one
attribution sync runs first, so ``initech.io`` (left to the service by the demo)
is attributed before those exports, and ``check_attribution_sync`` sees a sync.

Only rows that no export has claimed yet are moved, only files of the demo
(named by key), and only on an events database without landing files (the
first start): nothing that a scheduler has seen is rewritten.

Run as ``python -m devtools.demo_history KEY=ISO-INSTANT ...`` with the Airflow
environment of the local stack (``AIRFLOW_CONN_EVENTS_DB``, ``AIRFLOW_CONN_AWS_DEFAULT``,
``AIRFLOW_VAR_*``), in its own process so that ``scripts/run_local.py`` does not
import Airflow (nor inherit its logging set-up).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("demo_history")

#: The run id recorded by the loads and the sync (claim tokens, ``attribution_sync_runs``).
RUN_ID = "make-run-history"

#: One statement per table, in one transaction: the file's registry row (all its
#: timestamps shift by the same amount, ``loaded_at`` lands on the instant), its rows
#: not yet claimed by an export, and its billing day.
_DATE_BACK_SQL = (
    """
    UPDATE landing_files AS lf
    SET claimed_at = lf.claimed_at - d.shift,
        load_started_at = lf.load_started_at - d.shift,
        loaded_at = lf.loaded_at - d.shift,
        moved_at = lf.moved_at - d.shift,
        lease_expires_at = lf.lease_expires_at - d.shift,
        created_at = lf.created_at - d.shift
    FROM (SELECT file_id, loaded_at - %(at)s::timestamptz AS shift
          FROM landing_files
          WHERE bucket = %(bucket)s AND key = %(key)s AND status IN ('loaded', 'processed')
            AND loaded_at > %(at)s::timestamptz) AS d
    WHERE lf.file_id = d.file_id
    RETURNING lf.file_id
    """,
    """
    UPDATE events_log SET created_at = %(at)s::timestamptz
    WHERE file_id = %(file_id)s AND export_hour IS NULL AND export_status = 'pending'
    """,
    """
    UPDATE ingest_counts SET day = (%(at)s::timestamptz AT TIME ZONE 'UTC')::date
    WHERE file_id = %(file_id)s
    """,
)


def date_back_loads(conn: Any, bucket: str, delivered: Mapping[str, datetime]) -> dict[str, int]:
    """Date the loads of the given landing files back to their delivery instants.

    :param conn: a psycopg connection to the events database (one transaction is
        opened and committed here).
    :param bucket: the landing bucket.
    :param delivered: landing key -> instant it stands for (must be in the past).
    :return: landing key -> rows moved (keys not loaded, or already dated, are left out).
    """
    moved: dict[str, int] = {}
    with conn.transaction():
        for key, at in delivered.items():
            params = {"bucket": bucket, "key": key, "at": at}
            rows = conn.execute(_DATE_BACK_SQL[0], params).fetchall()
            for (file_id,) in rows:
                params["file_id"] = file_id
                moved[key] = conn.execute(_DATE_BACK_SQL[1], params).rowcount
                conn.execute(_DATE_BACK_SQL[2], params)
    return moved


def _sync_attribution() -> None:
    """One attribution sync and re-attribution, as ``events_attribution_sync`` runs them."""
    from events_pipeline.attribution import sync
    from events_pipeline.maintenance import reattribution

    resolved = sync.run(run_id=RUN_ID)
    if resolved.get("reattribute"):
        done = reattribution.run(run_id=RUN_ID)
        sync.mark_reattributed(resolved["sync_run_id"])
        log.info("attribution sync before the first export: re-attributed %s", done)


def load_history(delivered: Mapping[str, datetime], *, sync_attribution: bool) -> dict[str, int]:
    """Ingest what is in ``incoming/`` now, then date the given files back (see the module doc).

    Uses ``events_ingest``'s own task functions (``claim_files``, ``load_batch``), the
    attribution sync's when ``sync_attribution`` is set, and the Airflow connections
    and Variables of the environment.

    :param delivered: landing key -> instant its load is dated back to.
    :param sync_attribution: run one attribution sync before dating back (the
        ``pixel_management`` connection is defined).
    :return: landing key -> rows dated back.
    """
    from events_pipeline.common.db import connect
    from events_pipeline.common.settings import VAR_LANDING_BUCKET, get_setting
    from events_pipeline.ingest import pipeline

    for batch in pipeline.claim_files(RUN_ID):
        pipeline.load_batch(batch)
    if sync_attribution:
        try:
            _sync_attribution()
        except Exception as exc:  # noqa: BLE001 - the demo goes on; the sync DAG retries it
            log.warning(
                "attribution sync before the first export failed (events_attribution_sync retries): %s", exc
            )
    with connect() as conn:
        return date_back_loads(conn, get_setting(VAR_LANDING_BUCKET), delivered)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``KEY=ISO-INSTANT ...`` [``--sync-attribution``] [``--result FILE``].

    :param argv: arguments (default ``sys.argv[1:]``).
    :return: the exit code.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "files", nargs="+", metavar="KEY=INSTANT", help="landing key and its delivery instant"
    )
    parser.add_argument("--sync-attribution", action="store_true", help="run one attribution sync first")
    parser.add_argument("--result", type=Path, help="write {key: rows dated back} there as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s demo_history %(message)s", datefmt="%H:%M:%S")
    delivered = {}
    for item in args.files:
        key, _, instant = item.rpartition("=")
        delivered[key] = datetime.fromisoformat(instant)
    moved = load_history(delivered, sync_attribution=args.sync_attribution)
    log.info("dated back: %s", moved)
    if args.result:
        args.result.write_text(json.dumps(moved))
    return 0


if __name__ == "__main__":
    sys.exit(main())
