"""A landing file named like a quarantine companion (``*.error.json``) is still reported."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.integration.health.conftest import LANDING, put_object


def test_a_landing_file_named_error_json_is_quarantined_and_reported(health_env, db, run_dag, run_health):
    put_object(health_env, "incoming/c1/upload.error.json", b'{"event_type": "pageview"}\n')

    ingest = run_dag("events_ingest", logical_date=datetime.now(UTC))
    assert ingest.state == "success"
    keys = {o["Key"] for o in health_env.list_objects_v2(Bucket=LANDING).get("Contents", [])}
    assert "quarantine/c1/upload.error.json" in keys, keys

    run = run_health()

    assert run.failed() == {"check_quarantine"}, run.errors
    msg = run.errors["check_quarantine"]
    assert "1 file(s) in s3://test-landing/quarantine/ could not be read" in msg
    assert "quarantine/c1/upload.error.json since " in msg
