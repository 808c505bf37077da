"""events_health end to end: each fault seeded in PostgreSQL / S3 fails its own check, and only it."""

from __future__ import annotations

from datetime import timedelta

from events_pipeline.health.checks import CHECK_NAMES
from tests.integration.health.conftest import (
    add_client,
    add_events,
    add_export_run,
    add_landing_file,
    current_hour,
    put_object,
)

#: Every task of events_health: one per check, plus the metrics table.
CHECKS = {*CHECK_NAMES, "log_monitoring_metrics"}


def test_healthy_state_passes_every_check(health_env, db, run_health):
    end = current_hour()
    start = end - timedelta(hours=1)
    add_client(db, "acme", created_at=start - timedelta(hours=30))
    for h in range(1, 30):
        add_export_run(db, "acme", end - timedelta(hours=h))
    file_id = add_landing_file(
        db, "incoming/a.ndjson", loaded_at=start + timedelta(minutes=5), rows_loaded=300, rows_rejected=1
    )
    add_events(
        db, 300, created_at=start + timedelta(minutes=5), client_id="acme", batch_id="b1", file_id=file_id
    )
    add_events(db, 2, created_at=start + timedelta(minutes=6), client_id=None, batch_id="b2")
    add_events(
        db,
        50,
        created_at=start - timedelta(hours=2),
        client_id="acme",
        export_status="exported",
        export_hour=start - timedelta(hours=2),
    )
    put_object(health_env, "processed/a.ndjson")

    run = run_health(end)

    assert run.states == dict.fromkeys(CHECKS, "success"), run.errors
    assert run.dag_run.state == "success"
    assert run.alerts == []


def test_low_attribution_rate_fails_naming_unknown_sites(health_env, db, run_health):
    # The bad hour is 3 hours back and the latest hour is healthy: a backfilled
    # health run of the bad hour judges that hour (its data interval), not "now - 1 h".
    end = current_hour() - timedelta(hours=2)
    start = end - timedelta(hours=1)
    add_client(db, "acme")
    add_events(db, 500, created_at=current_hour() - timedelta(minutes=30), client_id="acme", batch_id="b0")
    add_events(db, 50, created_at=start + timedelta(minutes=1), client_id="acme", batch_id="b1")
    add_events(
        db,
        120,
        created_at=start + timedelta(minutes=2),
        client_id=None,
        site_id="shop.unknown.example",
        batch_id="b2",
    )
    add_events(
        db,
        30,
        created_at=start + timedelta(minutes=3),
        client_id=None,
        site_id="blog.other.example",
        batch_id="b3",
    )

    run = run_health(end)

    assert run.failed() == {"check_attribution_rate"}, run.errors
    assert run.dag_run.state == "failed"
    msg = run.errors["check_attribution_rate"]
    interval = f"{start:%Y-%m-%dT%H:%M:%SZ}..{end:%Y-%m-%dT%H:%M:%SZ}"
    assert f"attribution rate 25.0% (50 of 200 events created in {interval})" in msg
    assert "below 95.0%" in msg
    assert "shop.unknown.example (120 events, first at " in msg
    assert msg.index("shop.unknown.example") < msg.index("blog.other.example")
    assert msg.startswith("check_attribution_rate [runbook: docs/runbook.md#check_attribution_rate]: ")


def test_events_pending_too_long_fail_per_client(health_env, db, run_health):
    end = current_hour()
    start = end - timedelta(hours=1)
    add_client(db, "acme")
    add_client(db, "beta")
    old = start - timedelta(hours=4)
    add_events(db, 40, created_at=old, client_id="acme", batch_id="b1")
    failed_hour = start - timedelta(hours=5)
    add_events(
        db,
        10,
        created_at=failed_hour + timedelta(minutes=9),
        client_id="acme",
        batch_id="b2",
        export_hour=failed_hour,
    )
    add_export_run(db, "acme", failed_hour, status="failed", error="boom")
    add_events(db, 5, created_at=start, client_id="beta", batch_id="b3")  # young: fine
    add_events(db, 7, created_at=old, client_id=None, batch_id="b4")  # unattributed: not pending export

    run = run_health(end)

    assert run.failed() == {"check_pending_exports"}, run.errors
    msg = run.errors["check_pending_exports"]
    assert "50 attributed events of 1 client(s) pending export for more than 180 min" in msg
    ts = (failed_hour + timedelta(minutes=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hour = failed_hour.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"client acme: 50 since {ts} (40 unclaimed, 10 in export hours not succeeded since {hour})" in msg
    assert "beta" not in msg
    assert msg.startswith("check_pending_exports [runbook: docs/runbook.md#check_pending_exports]: ")


def test_batch_with_two_created_at_fails(health_env, db, run_health):
    end = current_hour()
    start = end - timedelta(hours=1)
    add_client(db, "acme")
    first, second = start - timedelta(minutes=20), start + timedelta(minutes=20)
    add_events(db, 100, created_at=first, client_id="acme", batch_id="b-split", file_id=7)
    add_events(db, 100, created_at=second, client_id="acme", batch_id="b-split", file_id=8)
    add_events(db, 100, created_at=second, client_id="acme", batch_id="b-fine", file_id=9)

    run = run_health(end)

    assert run.failed() == {"check_batch_consistency"}, run.errors
    msg = run.errors["check_batch_consistency"]
    f, s = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (first, second))
    assert "1 batch(es) loaded with more than one created_at" in msg
    assert f"batch b-split (200 events, clients acme, file_id 7,8) has 2 created_at from {f} to {s}" in msg
    assert "b-fine" not in msg
    assert msg.startswith("check_batch_consistency [runbook: docs/runbook.md#check_batch_consistency]: ")


def test_old_incoming_backlog_fails(health_env, db, run_health, monkeypatch):
    # moto stamps objects with the current time: a threshold of 0 minutes makes any object "too old".
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_HEALTH_MAX_INCOMING_AGE_MINUTES", "0")
    put_object(health_env, "incoming/2026/11/a.ndjson", b"x" * 100)
    put_object(health_env, "incoming/2026/11/b.ndjson", b"y" * 50)
    put_object(health_env, "processed/old.ndjson")

    run = run_health()

    assert run.failed() == {"check_incoming_backlog"}, run.errors
    msg = run.errors["check_incoming_backlog"]
    assert (
        "backlog in s3://test-landing/incoming/: 2 files, 150 bytes; oldest incoming/2026/11/a.ndjson since"
        in msg
    )
    assert "> 0 min): ingest is behind" in msg
    assert msg.startswith("check_incoming_backlog [runbook: docs/runbook.md#check_incoming_backlog]: ")


def test_file_in_quarantine_fails_with_its_reason(health_env, db, run_health):
    put_object(health_env, "quarantine/2026/11/bad.ndjson.gz", b"\x1f\x8b broken")
    put_object(
        health_env,
        "quarantine/2026/11/bad.ndjson.gz.error.json",
        b'{"key": "incoming/2026/11/bad.ndjson.gz", "kind": "corrupt_gzip", "detail": "CRC check failed"}',
    )

    run = run_health()

    assert run.failed() == {"check_quarantine"}, run.errors
    msg = run.errors["check_quarantine"]
    assert "1 file(s) in s3://test-landing/quarantine/ could not be read" in msg
    assert "quarantine/2026/11/bad.ndjson.gz since " in msg
    assert "(corrupt_gzip: CRC check failed)" in msg
    assert msg.startswith("check_quarantine [runbook: docs/runbook.md#check_quarantine]: ")


def test_high_rejected_rate_fails_naming_files(health_env, db, run_health):
    end = current_hour()
    start = end - timedelta(hours=1)
    add_landing_file(
        db, "incoming/x/bad.ndjson", loaded_at=start + timedelta(minutes=10), rows_loaded=80, rows_rejected=20
    )
    add_landing_file(
        db,
        "incoming/x/good.ndjson",
        loaded_at=start + timedelta(minutes=11),
        rows_loaded=100,
        rows_rejected=0,
    )
    add_landing_file(
        db,
        "incoming/x/earlier.ndjson",
        loaded_at=start - timedelta(minutes=1),
        rows_loaded=0,
        rows_rejected=500,
    )  # another hour

    run = run_health(end)

    assert run.failed() == {"check_rejected_rate"}, run.errors
    msg = run.errors["check_rejected_rate"]
    assert "rejected-line rate 10.0% (20 of 200 lines in 2 files loaded in" in msg
    assert "above 2.0%" in msg
    assert "incoming/x/bad.ndjson (20 of 100 lines rejected" in msg
    assert "see rejected/x/bad.ndjson.rejected.ndjson" in msg
    assert "earlier" not in msg
    assert msg.startswith("check_rejected_rate [runbook: docs/runbook.md#check_rejected_rate]: ")


def test_missing_export_run_fails_per_client(health_env, db, run_health):
    end = current_hour()
    add_client(db, "acme", created_at=end - timedelta(hours=6, minutes=30))
    add_client(db, "gone", created_at=end - timedelta(days=3), active=False)
    add_client(db, "newbie")  # created now: no closed hour expected yet
    add_export_run(db, "acme", end - timedelta(hours=7))  # before creation: irrelevant
    add_export_run(db, "acme", end - timedelta(hours=6))
    add_export_run(db, "acme", end - timedelta(hours=5))
    add_export_run(db, "acme", end - timedelta(hours=4), status="failed", error="S3 timeout")
    # hours end-3h and end-2h: no run at all; end-1h is not closed yet (grace 60 min).

    run = run_health(end)

    assert run.failed() == {"check_export_runs"}, run.errors
    msg = run.errors["check_export_runs"]
    since = (end - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    missing = (end - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "export run missing or not succeeded for 1 active client(s)" in msg
    assert (
        f"client acme: 3 hour(s) not exported since {since} [{since} failed (S3 timeout), {missing} missing"
        in msg
    )
    assert "gone" not in msg
    assert "newbie" not in msg
    assert msg.startswith("check_export_runs [runbook: docs/runbook.md#check_export_runs]: ")


def test_checks_are_independent_tasks_on_hourly_intervals(dagbag):
    from airflow.providers.common.sql.operators.sql import SQLCheckOperator

    dag = dagbag.dags["events_health"]
    assert len(CHECK_NAMES) == 9  # seven data checks, the attribution sync and the erasure requests
    assert set(dag.task_ids) == CHECKS
    for t in dag.tasks:  # no chaining: a failing check never skips another
        assert not t.upstream_task_ids and not t.downstream_task_ids, t.task_id
    sql_checks = {t.task_id: t for t in dag.tasks if isinstance(t, SQLCheckOperator)}
    assert set(sql_checks) == {
        "check_attribution_rate",
        "check_pending_exports",
        "check_batch_consistency",
        "check_rejected_rate",
        "check_export_runs",
        "check_erasure_requests",
    }
    for t in sql_checks.values():
        assert t.conn_id == "events_db"
        assert t.retry_on_failure is False  # bad data fails at once; DB errors still retry
        # the SQL file was found through template_searchpath (include/sql) and read at parse time
        assert f'Health check "{t.task_id}"' in t.sql
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.timetable.expression == "0 * * * *"


def test_bad_threshold_variable_fails_that_check_at_once(health_env, db, run_health, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_HEALTH_MAX_REJECTED_RATE", "lots")

    run = run_health()

    assert run.failed() == {"check_rejected_rate"}, run.errors
    msg = run.errors["check_rejected_rate"]
    assert "check_rejected_rate [runbook: docs/runbook.md#events_health]" in msg
    assert "'events_health_max_rejected_rate' = 'lots' is not a valid float" in msg
    assert len(run.alerts) == 1 and "try=1 " in run.alerts[0]  # not retried: a retry cannot fix it
