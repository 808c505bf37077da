"""The monitoring table renderer and the monitoring SQL files."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from events_pipeline.common.settings import SQL_ROOT
from events_pipeline.health import metrics_report as monitoring


def test_format_table_one_line_per_row():
    table = monitoring.format_table(
        [
            ("attribution_rate", [{"attribution_rate_pct": Decimal("97.50"), "total_events": 10}]),
            ("batch_consistency", []),
            (
                "export_pipeline_health",
                [{"export_status": "pending", "when": datetime(2026, 1, 1, tzinfo=UTC)}],
            ),
        ]
    )
    lines = table.splitlines()
    assert lines[0].startswith("query") and "| result" in lines[0]
    assert "attribution_rate       | attribution_rate_pct=97.5 total_events=10" in lines
    assert "batch_consistency      | (no rows)" in lines
    assert "export_pipeline_health | export_status=pending when=2026-01-01T00:00:00Z" in lines


def test_every_query_file_exists_without_stray_percent():
    for name in monitoring.QUERIES:
        sql = (SQL_ROOT / "monitoring" / f"{name}.sql").read_text()
        assert not re.search(r"%(?!\(\w+\)s)", sql), name
        assert set(re.findall(r"%\((\w+)\)s", sql)) <= {"interval_start", "interval_end"}


def test_whole_numbers_are_printed_in_full_and_fractions_short():
    from decimal import Decimal

    from events_pipeline.health.metrics_report import _fmt_value

    assert _fmt_value(Decimal("1933312")) == "1933312"
    assert _fmt_value(1933312.0) == "1933312"
    assert _fmt_value(Decimal("80.00")) == "80"
    assert _fmt_value(Decimal("95.123456789")) == "95.1235"
    assert _fmt_value(None) == "-"
