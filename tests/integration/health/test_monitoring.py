"""The original design's monitoring queries against the real PostgreSQL: values and the logged table."""

from __future__ import annotations

import logging
from datetime import timedelta

from tests.integration.health.conftest import add_client, add_events, current_hour


def test_monitoring_queries_report_the_interval(services, clean_tables, db, caplog):
    from events_pipeline.health.metrics_report import log_metrics

    end = current_hour()
    start = end - timedelta(hours=1)
    add_client(db, "acme")
    add_events(db, 30, created_at=start + timedelta(minutes=1), client_id="acme", batch_id="b1")
    add_events(db, 10, created_at=start + timedelta(minutes=2), client_id="acme", batch_id="b1")
    add_events(db, 10, created_at=start + timedelta(minutes=3), client_id=None, batch_id="b2")
    add_events(db, 99, created_at=start - timedelta(hours=3), client_id=None, batch_id="b3")  # other hour
    add_events(
        db,
        20,
        created_at=start - timedelta(hours=5),
        client_id="acme",
        export_status="exported",
        export_hour=start - timedelta(hours=5),
    )

    with caplog.at_level(logging.INFO, logger="events_pipeline.health.metrics_report"):
        out = log_metrics(start, end)

    assert out["batch_consistency"] == [{"inconsistent_batches": "1", "events_in_them": "40"}]
    assert out["attribution_rate"] == [{"attribution_rate_pct": "80", "total_events": "50"}]
    by_status = {r["export_status"]: r for r in out["export_pipeline_health"]}
    assert by_status["pending"]["events"] == "149"
    assert by_status["exported"]["events"] == "20"
    assert out["table_size"][0]["last_24h"] == "169"
    assert int(out["table_size"][0]["table_bytes"]) > 0  # the original design's pg_total_relation_size says 0
    assert {r["index_name"] for r in out["index_usage"]} >= {"events_log_unclaimed_idx", "events_log_pkey"}
    table = caplog.text
    assert "query                  | result" in table
    assert "attribution_rate       | attribution_rate_pct=80 total_events=50" in table
