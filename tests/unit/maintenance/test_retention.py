"""Pure parts of retention: the result summary returned to Airflow (XCom)."""

from __future__ import annotations

import json
from datetime import date

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
