"""No task or run can hang for ever: every task has an execution_timeout, every DAG a dagrun_timeout.

A slow tenant must not hold the export's other clients: events_export runs several hours
at once and no task of it may outlive its timeout (docs/export.md, "Slow tenants").
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from events_pipeline.orchestration.dag_defaults import (
    DAG_IDS,
    DEFAULT_EXECUTION_TIMEOUT,
    EXECUTION_TIMEOUTS,
    dagrun_timeout,
)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_task_of_every_dag_has_an_execution_timeout(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    for task in dag.tasks:
        assert isinstance(task.execution_timeout, timedelta), f"{dag_id}.{task.task_id}: no execution_timeout"
        assert task.execution_timeout <= EXECUTION_TIMEOUTS.get(dag_id, DEFAULT_EXECUTION_TIMEOUT)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_dag_has_a_dagrun_timeout(dagbag, dag_id):
    assert dagbag.dags[dag_id].dagrun_timeout == dagrun_timeout(dag_id)


def test_the_export_runs_hours_at_once_within_bounded_tasks(dagbag):
    dag = dagbag.dags["events_export"]
    assert dag.max_active_runs > 1  # a stuck hour never holds the next hours of the others
    assert {t.task_id for t in dag.tasks} == {"plan_export", "export_group"}
    assert dag.get_task("export_group").execution_timeout <= timedelta(minutes=45)
    assert dag.dagrun_timeout <= timedelta(hours=4)
