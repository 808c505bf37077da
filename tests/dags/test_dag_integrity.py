"""DAG integrity: every DAG imports, follows team policy, and parses without I/O.

Parsing happens in a fresh interpreter (``_parse_in_subprocess``) so that what
the DAG files import and touch is measured on its own, not mixed with what the
rest of the test session already loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from events_pipeline.orchestration.dag_defaults import ALLOWED_TAGS, DAG_IDS, OWNER

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
#: Libraries that must not load while the scheduler parses DAG files.
HEAVY_MODULES = ("pandas", "pyarrow", "boto3", "botocore", "psycopg", "orjson", "numpy", "duckdb", "moto")
#: The DAGs folder must parse (after Airflow itself is imported) in under this many seconds.
PARSE_BUDGET_S = 2.0

_PROBE = textwrap.dedent(
    """
    import json, os, socket, sys, time
    sys.path.insert(0, {plugins!r})
    from airflow.dag_processing.dagbag import DagBag
    import airflow.sdk
    from airflow.sdk import BaseHook, Variable

    touched = []
    def _forbidden(name):
        def _raise(*args, **kwargs):
            touched.append(name)
            raise RuntimeError(name + " called while parsing DAG files")
        return _raise
    BaseHook.get_connection = classmethod(_forbidden("BaseHook.get_connection"))
    Variable.get = staticmethod(_forbidden("Variable.get"))
    socket.socket.connect = _forbidden("socket.connect")

    before = set(sys.modules)
    start = time.perf_counter()
    bag = DagBag(dag_folder={dags!r})
    seconds = time.perf_counter() - start
    loaded = sorted({{m.split(".")[0] for m in set(sys.modules) - before}})
    print(json.dumps({{
        "seconds": seconds,
        "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
        "dags": sorted(bag.dags),
        "touched": touched,
        "loaded": loaded,
    }}))
    """
)


@pytest.fixture(scope="module")
def parse_report(run_dir: Path) -> dict:
    """Parse ``dags/`` in a fresh interpreter with connections, Variables and sockets forbidden."""
    code = _PROBE.format(plugins=str(REPO / "plugins"), dags=str(REPO / "dags"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_dag_file_imports_without_errors(parse_report: dict) -> None:
    assert parse_report["errors"] == {}


def test_parsing_touches_no_connection_variable_or_socket(parse_report: dict) -> None:
    assert parse_report["touched"] == []


def test_parsing_loads_no_heavy_library(parse_report: dict) -> None:
    assert not set(parse_report["loaded"]) & set(HEAVY_MODULES), parse_report["loaded"]


def test_dags_folder_parses_within_budget(parse_report: dict) -> None:
    assert parse_report["seconds"] < PARSE_BUDGET_S, f"dags/ took {parse_report['seconds']:.2f}s to parse"


def test_dag_ids_are_the_reserved_ones_and_match_file_names(dagbag) -> None:
    assert set(dagbag.dags) == set(DAG_IDS), set(dagbag.dags) ^ set(DAG_IDS)
    for dag_id, dag in dagbag.dags.items():
        assert Path(dag.fileloc).stem == dag_id, (
            f"{dag_id} lives in {dag.fileloc}; one DAG per file named for it"
        )
    assert {p.stem for p in DAG_FILES} == set(dagbag.dags)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_follows_team_policy(dagbag, dag_id: str) -> None:
    dag = dagbag.dags.get(dag_id)
    assert dag is not None, f"{dag_id} (contract §4 (docs/contract.md)) is missing from dags/"
    assert dag.tags and set(dag.tags) <= ALLOWED_TAGS, (
        f"{dag_id} tags {dag.tags} not in {sorted(ALLOWED_TAGS)}"
    )
    assert "events" in dag.tags
    assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} needs doc_md for on-call"
    assert dag.description and len(dag.description) <= 120, (
        f"{dag_id} needs a one-line description for the UI"
    )
    assert "runbook" in dag.doc_md, f"{dag_id} doc_md must link its runbook entry"
    assert dag.owner == OWNER
    for task in dag.tasks:
        where = f"{dag_id}.{task.task_id}"
        assert task.retries >= 1, f"{where} has no retries"
        assert task.retry_exponential_backoff, f"{where} retries without backoff"
        assert task.retry_delay >= timedelta(seconds=10), f"{where} retries too fast"
        assert task.on_failure_callback, f"{where} has no failure callback"
        assert task.owner == OWNER, f"{where} owner {task.owner}"


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_a_scheduled_dag_tells_on_call_a_run_is_late_before_it_times_out(dagbag, dag_id: str) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    from events_pipeline.orchestration.deadlines import RUN_DEADLINES

    dag = dagbag.dags[dag_id]
    if dag.schedule is None:
        assert not dag.deadline, f"{dag_id} is manual only: a deadline would alert on every long manual run"
        assert dag_id not in RUN_DEADLINES
        return
    assert dag.deadline and len(dag.deadline) == 1, f"{dag_id} is scheduled but has no deadline alert"
    alert = dag.deadline[0]
    assert type(alert.reference).__name__ == "DagRunQueuedAtDeadline", (
        f"{dag_id}: count from the queued time, so a backfilled old hour is not late at once"
    )
    assert alert.interval == RUN_DEADLINES[dag_id]
    assert alert.interval < dag.dagrun_timeout, f"{dag_id}: the alert must come before the run times out"
    assert alert.callback.path == "events_pipeline.orchestration.deadlines.run_is_late"
    assert alert.callback.kwargs == {"dag_id": dag_id}
    # what the scheduler reads: the serialized DAG keeps the alert
    data = DagSerialization.to_dict(dag)
    assert "run_is_late" in str(data["dag"].get("deadline")), f"{dag_id}: deadline lost in serialization"
