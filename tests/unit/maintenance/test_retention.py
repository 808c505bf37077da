"""Pure parts of retention: the result summary returned to Airflow (XCom), the choice of mode."""

from __future__ import annotations

import json
from datetime import date

import pytest

from events_pipeline.maintenance.retention import PartitionResult, RetentionResult


def test_result_summary_is_json_and_hides_skipped():
    res = RetentionResult(
        billed_through=date(2026, 11, 26),
        partitions=[
            PartitionResult("events_log_p20261101", "drop", total=10, deleted=10, seconds=0.1),
            PartitionResult("events_log_p20261102", "skip"),
            PartitionResult("events_log_p20261103", "deferred"),
            PartitionResult("events_log_default", "batch", deleted=3),
        ],
    )
    out = json.loads(json.dumps(res.as_dict()))
    assert out["billed_through"] == "2026-11-26"
    assert out["deleted"] == 13
    assert [p["partition"] for p in out["partitions"]] == [
        "events_log_p20261101",
        "events_log_p20261103",
        "events_log_default",
    ]
    assert out["deferred"] == ["events_log_p20261103"]


def _choose(monkeypatch, *, day, stats=(100, 0, 0), proven=False, force_mode=None):
    from events_pipeline.maintenance import retention

    monkeypatch.setattr(retention, "_stats", lambda conn, name, params: stats)
    monkeypatch.setattr(retention, "_provably_all_deletable", lambda conn, name, day, params: proven)
    options = retention._Options(
        lock_timeout_ms=500, swap_max_survivor_ratio=0.25, batch_blocks=10, force_mode=force_mode, run_id=None
    )
    mode, _ = retention._choose_mode(object(), day, "events_log_p20261101", {}, options)
    return mode


@pytest.mark.parametrize(
    ("stats", "proven", "force_mode", "expected"),
    [
        ((100, 100, 100), True, None, "swap"),  # proven all deletable: no estimate needed
        ((100, 90, 95), False, None, "swap"),  # few survivors
        ((100, 30, 95), False, None, "deferred"),  # partly expired today, nearly all tomorrow
        ((100, 30, 40), False, None, "batch"),  # many survivors today and tomorrow
        ((100, 30, 95), False, "batch", "batch"),  # forced: never deferred
        ((100, 30, 40), False, "swap", "swap"),
    ],
)
def test_mode_of_a_daily_partition(monkeypatch, stats, proven, force_mode, expected):
    assert (
        _choose(monkeypatch, day=date(2026, 11, 1), stats=stats, proven=proven, force_mode=force_mode)
        == expected
    )


@pytest.mark.parametrize("force_mode", [None, "swap"])
def test_the_default_partition_is_always_deleted_in_batches(monkeypatch, force_mode):
    assert _choose(monkeypatch, day=None, force_mode=force_mode) == "batch"


def test_the_batch_size_setting_is_shared_by_retention_and_archival():
    from events_pipeline.common import heap_ranges
    from events_pipeline.common.settings import SETTINGS
    from events_pipeline.maintenance import archival, retention

    assert retention.SET_BATCH_BLOCKS is archival.SET_BATCH_BLOCKS is heap_ranges.SET_BATCH_BLOCKS
    assert SETTINGS["events_maintenance_batch_blocks"].default == heap_ranges.DEFAULT_BATCH_BLOCKS
