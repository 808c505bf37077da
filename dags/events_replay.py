"""events_replay: feed a quarantined file, or rejected lines, back through ingest after a fix (manual)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from events_pipeline.common.runbook import runbook_link
from events_pipeline.orchestration.dag_defaults import START_DATE, dagrun_timeout, default_args

DOC = f"""
### Replay bad input through ingest (manual)

Feeds input that ingest refused back through the normal ingest path (validation,
attribution, GDPR treatment, one COPY transaction, `rejected/`, `processed/`) once
the cause is fixed, and records where every loaded line came from.

- **Trigger** from the UI (*Trigger DAG*, the form) with the original file's
  `landing_files.file_id` and what to replay:
  - **rejected_lines**: the lines of its `rejected/` object: all of them, the lines up
    to **Last line**, or **First line**..**Last line** (original line numbers). A fixed
    copy of that object (same `{{"line", "reason", "raw"}}` records, `raw` corrected)
    can be given as **Fixed object key**.
  - **quarantined_file**: the whole quarantined file, as it is in `quarantine/` (the fix
    was a setting or the code) or a fixed copy given as **Fixed object key** (keep the
    original's line numbering: fix lines in place).
- **What happens**: a replay object `replay/<tag>/...` is registered in `landing_files`
  with `replay_of` = the original file, keeps the original line numbers, and is loaded
  like any landing file; each loaded line is recorded in `replayed_lines` (original
  file, line). A line loaded by an earlier replay is left out: **replaying twice loads
  every line once**. Lines rejected again go to the replay's own `rejected/` object,
  with their original line numbers.
- **Input**: the landing bucket (`events_landing_bucket`), `events_db`; Variables of
  ingest (`events_ip_hash_secret`, `events_ingest_*`).
- **Output**: `events_log` rows (`file_id` = the replay's), `landing_files`,
  `replayed_lines`, `ingest_counts`; `processed/replay/...`, `rejected/replay/...`.
- **If it fails**: a wrong form value fails at once naming the field; a missing or
  malformed object names its key and line. Retrying is safe (nothing loads twice).
  See [{runbook_link("events_replay")}] and docs/ingest.md.
"""


@dag(
    dag_id="events_replay",
    description="Manual: replay a quarantined file or rejected lines through ingest after a fix",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=4,
    dagrun_timeout=dagrun_timeout("events_replay"),
    default_args=default_args("events_replay"),
    tags=["events", "ingest"],
    doc_md=DOC,
    params={
        "mode": Param(
            "rejected_lines",
            type="string",
            enum=["rejected_lines", "quarantined_file"],
            title="What to replay",
            description="rejected_lines: lines of the file's rejected/ object; "
            "quarantined_file: the whole quarantined file.",
        ),
        "file_id": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Original file (landing_files.file_id)",
            description="The registry id of the file whose input to replay (required); "
            "see landing_files, or the ingest log line 'loaded ... (file_id=N)'.",
        ),
        "first_line": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="First line (rejected_lines only)",
            description="First original line number to replay. Empty: from the first rejected line.",
        ),
        "last_line": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Last line (rejected_lines only, inclusive)",
            description="Last original line number to replay. Empty: to the last rejected line.",
        ),
        "fixed_key": Param(
            None,
            type=["null", "string"],
            maxLength=1024,
            title="Fixed object key (optional)",
            description="A key of the landing bucket (not under incoming/) holding the fixed input: "
            "a fixed quarantined file, or fixed rejected-line records. Empty: the original object as it is.",
        ),
    },
)
def events_replay() -> None:
    """One task: check the form, build the replay object, load it through ingest."""

    @task
    def replay(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
        """Replay what the form names; fail at once naming a wrong field."""
        from events_pipeline.ingest import replay as replays

        return replays.run(params, run_id=str(run_id))

    replay()


events_replay()
