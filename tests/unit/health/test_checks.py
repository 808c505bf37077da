"""Pure parts of the health checks: thresholds, messages, S3 verdicts, SQL files."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from events_pipeline.common.settings import SETTINGS, SQL_ROOT
from events_pipeline.health import checks as health

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PARAMS = {"interval_start": NOW - timedelta(hours=1), "interval_end": NOW}


def test_thresholds_are_registered_settings_with_defaults():
    names = {n for n in SETTINGS if n.startswith("events_health_")}
    assert names == {
        "events_health_min_attribution_rate",
        "events_health_attribution_min_events",
        "events_health_max_pending_minutes",
        "events_health_batch_lookback_minutes",
        "events_health_max_incoming_age_minutes",
        "events_health_max_rejected_rate",
        "events_health_rejected_min_lines",
        "events_health_export_lookback_hours",
        "events_health_export_grace_minutes",
    }
    for name in names:
        assert SETTINGS[name].default is not None, name
        assert SETTINGS[name].help


def test_threshold_read_from_variable_environment(monkeypatch):
    from events_pipeline.common.settings import get_setting

    assert get_setting("events_health_max_rejected_rate") == 0.02
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_HEALTH_MAX_REJECTED_RATE", "0.5")
    assert get_setting("events_health_max_rejected_rate") == 0.5


def test_every_sql_check_has_its_file_and_binds_only_known_parameters():
    for check in health.SQL_CHECKS.values():
        sql = (SQL_ROOT / check.sql_name).read_text()
        used = set(re.findall(r"%\((\w+)\)s", sql))
        assert used <= {"interval_start", "interval_end", *check.settings}, check.name
        # psycopg treats any other "%" as a placeholder: the files must not contain one.
        assert not re.search(r"%(?!\(\w+\)s)", sql), check.name
        assert check.name in health.CHECK_NAMES


def test_fmt_ts_and_pct():
    assert health.fmt_ts(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert health.fmt_ts("2026-01-02T04:04:05+01:00") == "2026-01-02T03:04:05Z"
    assert health.fmt_ts(None) == "?"
    assert health.fmt_pct(0.8754) == "87.5%"
    assert health.fmt_pct(None) == "n/a"


def test_attribution_outcome_messages():
    check = health.SQL_CHECKS["check_attribution_rate"]
    params = {**PARAMS, "min_rate": 0.95, "min_events": 100}
    bad = {
        "ok": False,
        "total_events": 200,
        "attributed_events": 50,
        "attribution_rate": 0.25,
        "top_unknown": [{"site_id": "x.example", "events": 150, "first_seen": "2026-11-27T11:02:00+00:00"}],
    }
    out = check.outcome(bad, params)
    assert not out.ok
    assert out.message == (
        "check_attribution_rate [runbook: docs/runbook.md#check_attribution_rate]: attribution rate 25.0% "
        "(50 of 200 events created in 2026-11-27T11:00:00Z..2026-11-27T12:00:00Z) is below 95.0%; "
        "top unknown site_ids: x.example (150 events, first at 2026-11-27T11:02:00Z)"
    )
    few = {**bad, "ok": True, "total_events": 3}
    assert "only 3 events" in check.outcome(few, params).message


def test_missing_row_is_a_failure_naming_the_file():
    out = health.SQL_CHECKS["check_export_runs"].outcome(None, PARAMS)
    assert not out.ok
    assert "health/export_runs.sql returned no row" in out.message


def test_backlog_verdicts():
    objs = [
        {"Key": "incoming/b.ndjson", "Size": 10, "LastModified": NOW - timedelta(minutes=5)},
        {"Key": "incoming/a.ndjson", "Size": 30, "LastModified": NOW - timedelta(minutes=45)},
    ]
    bad = health.evaluate_backlog(objs, bucket="land", now=NOW, max_age_minutes=30)
    assert not bad.ok
    assert (
        "backlog in s3://land/incoming/: 2 files, 40 bytes; oldest incoming/a.ndjson since "
        "2026-11-27T11:15:00Z (45 min old > 30 min): ingest is behind"
    ) in bad.message
    assert health.evaluate_backlog(objs[:1], bucket="land", now=NOW, max_age_minutes=30).ok
    assert health.evaluate_backlog([], bucket="land", now=NOW, max_age_minutes=30).ok


def test_quarantine_verdicts_ignore_error_files():
    objs = [
        {"Key": "quarantine/a.gz", "LastModified": NOW},
        {"Key": "quarantine/a.gz.error.json", "LastModified": NOW},
    ]
    out = health.evaluate_quarantine(objs, bucket="land", reasons={"quarantine/a.gz": "corrupt gzip"})
    assert not out.ok
    assert "1 file(s) in s3://land/quarantine/" in out.message
    assert "quarantine/a.gz since 2026-11-27T12:00:00Z (corrupt gzip)" in out.message
    assert health.evaluate_quarantine(objs[1:], bucket="land").ok
    many = [{"Key": f"quarantine/{i}", "LastModified": NOW + timedelta(seconds=i)} for i in range(8)]
    assert "; and 3 more" in health.evaluate_quarantine(many, bucket="land").message


def test_quarantine_reports_a_landing_file_that_was_named_like_a_companion():
    objs = [
        {"Key": "quarantine/c1/x.error.json", "LastModified": NOW},
        {"Key": "quarantine/c1/x.error.json.error.json", "LastModified": NOW},
    ]
    out = health.evaluate_quarantine(
        objs, bucket="land", reasons={"quarantine/c1/x.error.json": "bad suffix"}
    )
    assert not out.ok
    assert "1 file(s)" in out.message and "quarantine/c1/x.error.json since" in out.message
    assert [o["Key"] for o in health.quarantined_files(objs)] == ["quarantine/c1/x.error.json"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"reason": "not UTF-8 at byte 12"}', "not UTF-8 at byte 12"),
        (b'{"kind": "invalid_utf8", "detail": "byte 0xff", "line": 3}', "invalid_utf8: byte 0xff at line 3"),
        (b'{"error": "bad\\n gzip"}', "bad gzip"),
        (b'{"other": 1}', '{"other": 1}'),
        (b"plain text", "plain text"),
        (None, "no .error.json"),
    ],
)
def test_error_reason(raw, reason):
    assert health.error_reason(raw) == reason


def test_interval_required():
    with pytest.raises(health.HealthCheckError, match="no data interval"):
        health.interval_of({"data_interval_start": None, "data_interval_end": None})


def test_runbook_has_an_entry_per_dag_and_check():
    from events_pipeline.common.runbook import RUNBOOK
    from events_pipeline.orchestration.dag_defaults import DAG_IDS

    text = (SQL_ROOT.parents[1] / RUNBOOK).read_text()
    headings = set(re.findall(r"^## (\S+)\s*$", text, flags=re.MULTILINE))
    missing = {*DAG_IDS, *health.CHECK_NAMES, "log_monitoring_metrics"} - headings
    assert not missing, f"docs/runbook.md lacks ## {sorted(missing)}"


def test_health_doc_lists_every_threshold():

    text = (SQL_ROOT.parents[1] / "docs" / "health.md").read_text()
    for name in SETTINGS:
        if name.startswith(("events_health_", "events_alert_")):
            assert f"`{name}`" in text, name
