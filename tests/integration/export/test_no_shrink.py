"""A re-run never deletes delivered data: an hour whose marking committed is never shrunk silently.

The scenario of the runbook's old advice: an hour's rows are marked exported, the
manifest write then fails for good; later the rows are deleted (retention, erasure);
an operator clears the failed hour. The re-run must not write a smaller manifest nor
delete the parts already in both buckets; the health check keeps alerting until the
hour is published; only an explicit, recorded operator choice (the trigger form's
``allow_shrink``) publishes the hour with the rows left.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from events_pipeline.common.db import as_dict, load_sql
from events_pipeline.export import client_hour as exporting
from events_pipeline.export.client_hour import ExportError
from events_pipeline.health.checks import SQL_CHECKS
from tests.conftest import task_states
from tests.integration.export.conftest import (
    HOUR,
    add_client,
    folder,
    insert_rows,
    list_keys,
    make_rows,
    read_hour,
    run_hour,
    spread,
)

H0 = HOUR
ACME = "exports/acme"


@pytest.fixture
def manifest_write_fails(monkeypatch):
    """Every write of ``_manifest.json`` fails (after the hour's marking committed)."""

    def put_manifest(self, body):
        raise ExportError("injected: the manifest write fails")

    monkeypatch.setattr(exporting._Uploader, "put_manifest", put_manifest)
    return monkeypatch


def _pending_check(db) -> tuple[bool, str]:
    """Run check_pending_exports' SQL and message as the health DAG does, now."""
    check = SQL_CHECKS["check_pending_exports"]
    params = {"interval_end": datetime.now(UTC), "max_pending_minutes": 180}
    row = as_dict(db.execute(load_sql(check.sql_name), params))
    outcome = check.outcome(row, params)
    return outcome.ok, outcome.message


def _acme_with_rows(db, rows: int = 12) -> None:
    add_client(db, "acme", "client-acme", ACME)
    insert_rows(db, make_rows("acme", spread(H0, rows), seed=1))


def _reexport_form(run_dag, *, allow_shrink: bool, reason: str = ""):
    conf = {
        "clients": ["acme"],
        "first_hour": H0.isoformat(),
        "allow_shrink": allow_shrink,
        "reason": reason,
    }
    return run_dag("events_export", logical_date=H0 + timedelta(hours=3), run_conf=conf)


def test_a_cleared_hour_whose_rows_are_gone_keeps_its_parts_and_alerts(
    export_env, db, run_dag, manifest_write_fails, caplog
):
    s3 = export_env
    _acme_with_rows(db)
    dr = run_hour(run_dag, H0)  # every try: marking committed, manifest refused
    assert dr.state == "failed", task_states(dr)
    parts_client = list_keys(s3, "client-acme")
    parts_backup = list_keys(s3, "test-backup", "acme/")
    assert parts_client == [f"{folder(ACME, H0)}/part-00000.parquet"]
    assert parts_backup == [f"{folder('acme', H0)}/part-00000.parquet"]
    assert db.execute("SELECT status FROM export_runs").fetchone() == ("failed",)
    manifest_write_fails.undo()

    # later, the hour's rows are deleted (retention of the old design, or erasure)
    db.execute("DELETE FROM events_log WHERE export_hour = %s", (H0,))

    # the operator clears the failed hour, as the runbook said: nothing is shrunk
    caplog.set_level(logging.INFO)
    dr = run_hour(run_dag, H0)
    assert list_keys(s3, "client-acme") == parts_client  # the part is still there, no manifest
    assert list_keys(s3, "test-backup", "acme/") == parts_backup
    assert dr.state == "failed"
    assert db.execute("SELECT committed_rows FROM export_runs").fetchone() == (12,)

    # the health check reports the hour although none of its rows is left
    ok, message = _pending_check(db)
    assert not ok
    assert "client acme: 12 since" in message and f"since {H0:%Y-%m-%dT%H:%M:%SZ}" in message
    status, error = db.execute("SELECT status, error FROM export_runs").fetchone()
    assert status == "failed"
    assert "refused to shrink the hour" in error and "12 rows" in error and "only 0 remain" in error
    assert "allow_shrink" in error and "client=acme" in error
    assert not _pending_check(db)[0]  # still alerting

    # the explicit, recorded operator choice publishes the hour with what is left (nothing)
    dr = _reexport_form(run_dag, allow_shrink=True, reason="INC-42: rows erased")
    assert dr.state == "success", task_states(dr)
    for bucket, prefix in (("client-acme", ACME), ("test-backup", "acme")):
        manifest, table = read_hour(s3, bucket, folder(prefix, H0))
        assert manifest["row_count"] == 0 and table.num_rows == 0
        assert list_keys(s3, bucket, prefix) == [f"{folder(prefix, H0)}/_manifest.json"]
    status, shrink = db.execute("SELECT status, shrink_allowed FROM export_runs").fetchone()
    assert status == "succeeded"
    assert shrink.startswith("12 -> 0 rows: run manual__") and "INC-42: rows erased" in shrink
    assert any("SHRINKING the hour from 12 to 0 rows" in r.getMessage() for r in caplog.records)
    assert _pending_check(db)[0]  # published: the alert clears


def test_a_partly_erased_hour_is_refused_then_published_with_the_rows_left(
    export_env, db, run_dag, manifest_write_fails
):
    s3 = export_env
    _acme_with_rows(db)
    assert run_hour(run_dag, H0).state == "failed"
    manifest_write_fails.undo()
    erased = db.execute(
        "DELETE FROM events_log WHERE id IN (SELECT id FROM events_log ORDER BY id LIMIT 5) "
        "RETURNING event_id"
    ).fetchall()
    assert len(erased) == 5

    assert run_hour(run_dag, H0).state == "failed"  # a plain clear: refused
    assert "only 7 remain" in db.execute("SELECT error FROM export_runs").fetchone()[0]
    assert _reexport_form(run_dag, allow_shrink=False).state == "failed"  # the form without the choice

    assert _reexport_form(run_dag, allow_shrink=True, reason="erasure 17").state == "success"
    manifest, table = read_hour(s3, "client-acme", folder(ACME, H0))
    assert manifest["row_count"] == 7
    assert not {str(e[0]) for e in erased} & set(table.column("event_id").to_pylist())


def test_late_rows_after_the_commit_still_join_an_unpublished_hour(
    export_env, db, run_dag, manifest_write_fails
):
    """Growing is not shrinking: the retry of a committed hour takes the rows that arrived since."""
    s3 = export_env
    _acme_with_rows(db)
    assert run_hour(run_dag, H0).state == "failed"
    manifest_write_fails.undo()
    insert_rows(db, make_rows("acme", [H0 + timedelta(minutes=30)], seed=5, batch_id="late"))
    assert run_hour(run_dag, H0).state == "success"
    assert read_hour(s3, "client-acme", folder(ACME, H0))[0]["row_count"] == 13
    assert db.execute("SELECT status, committed_rows FROM export_runs").fetchone() == ("succeeded", 13)


def test_allow_shrink_needs_the_forms_clients_and_hours(export_env, db, run_dag):
    add_client(db, "acme", "client-acme", ACME)
    dr = run_dag("events_export", logical_date=H0 + timedelta(hours=1), run_conf={"allow_shrink": True})
    assert dr.state == "failed"
    assert task_states(dr)["plan_export"] == "failed"
    assert list_keys(export_env, "client-acme") == []
