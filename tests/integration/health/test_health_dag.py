"""events_health end to end: each fault seeded in PostgreSQL / S3 fails its own check, and only it."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.health.conftest import (
    add_client,
    add_events,
    add_export_run,
    add_landing_file,
    current_hour,
    put_object,
)

CHECKS = {
    "check_attribution_rate",
    "check_pending_exports",
    "check_batch_consistency",
    "check_incoming_backlog",
    "check_quarantine",
    "check_rejected_rate",
    "check_export_runs",
    "log_monitoring_metrics",
}


def test_healthy_state_passes_every_check(health_env, db, run_health):
    end = current_hour()
    start = end - timedelta(hours=1)
    add_client(db, "acme", created_at=start - timedelta(hours=30))
    for h in range(1, 30):
        add_export_run(db, "acme", end - timedelta(hours=h))
    file_id = add_landing_file(db, "incoming/a.ndjson", loaded_at=start + timedelta(minutes=5),
                               rows_loaded=300, rows_rejected=1)
    add_events(db, 300, created_at=start + timedelta(minutes=5), client_id="acme", batch_id="b1",
               file_id=file_id)
    add_events(db, 2, created_at=start + timedelta(minutes=6), client_id=None, batch_id="b2")
    add_events(db, 50, created_at=start - timedelta(hours=2), client_id="acme", export_status="exported",
               export_hour=start - timedelta(hours=2))
    put_object(health_env, "processed/a.ndjson")

    run = run_health(end)

    assert run.states == dict.fromkeys(CHECKS, "success"), run.errors
    assert run.dag_run.state == "success"
    assert run.alerts == []
