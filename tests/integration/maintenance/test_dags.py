"""The three DAGs: schedules, catch-up, task order, policy."""

from __future__ import annotations

from itertools import pairwise

from events_pipeline.orchestration.dag_defaults import ALLOWED_TAGS


def test_maintenance_dags_shape(dagbag):
    mine = ("events_maintenance", "events_gdpr_erasure", "events_billing")
    assert not [e for f, e in dagbag.import_errors.items() if any(m in f for m in mine)]
    maint = dagbag.dags["events_maintenance"]
    order = [
        "ensure_partitions",
        "archive_stale_pending",
        "reattribute_events",
        "sweep_gdpr_ips",
        "apply_retention",
    ]
    for up, down in pairwise(order):
        assert down in maint.get_task(up).downstream_task_ids
    assert maint.catchup is False
    billing = dagbag.dags["events_billing"]
    assert billing.catchup is True
    assert type(billing.timetable).__name__ == "CronDataIntervalTimetable"
    erasure = dagbag.dags["events_gdpr_erasure"]
    assert erasure.max_active_runs == 1
    for dag in (maint, billing, erasure):
        assert set(dag.tags) <= ALLOWED_TAGS
        assert dag.doc_md and f"runbook.md#{dag.dag_id}" in dag.doc_md
        for t in dag.tasks:
            assert t.retries >= 1
