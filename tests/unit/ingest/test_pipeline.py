"""Batching of claims for dynamic task mapping, the run summary, COPY error mapping."""

from __future__ import annotations

import pytest

from events_pipeline.common import failpoints as ingest_faults
from events_pipeline.ingest import pipeline as ingest
from events_pipeline.ingest.copy_load import copy_error_line
from events_pipeline.ingest.landing import Claim


def _claims(sizes: list[int]) -> list[Claim]:
    return [Claim(i, f"incoming/f{i}", "e", s, "claimed", 1, "t") for i, s in enumerate(sizes)]


def test_batches_are_bounded_and_balanced_by_bytes() -> None:
    claims = _claims([100, 90, 10, 10, 10, 10, 5, 5, 1])
    batches = ingest.make_batches(claims, 3)
    assert len(batches) == 3
    assert sorted(c.file_id for b in batches for c in b) == list(range(9))
    totals = sorted(sum(c.size_bytes for c in b) for b in batches)
    assert totals[-1] <= 100 and totals[0] >= 30


def test_no_claims_no_batches() -> None:
    assert ingest.make_batches([], 8) == []


def test_summary_totals() -> None:
    results = [
        [
            {
                "key": "a",
                "outcome": "loaded",
                "rows_loaded": 10,
                "rows_rejected": 1,
                "bytes": 100,
                "seconds": 0.5,
                "per_client": {"acme": 7, "": 3},
            },
        ],
        [
            {
                "key": "b",
                "outcome": "quarantined",
                "rows_loaded": 0,
                "rows_rejected": 0,
                "bytes": 5,
                "seconds": 0.1,
                "per_client": {},
            },
        ],
    ]
    totals = ingest.summarize(results)
    assert totals["rows_loaded"] == 10 and totals["files"] == 2
    assert totals["outcomes"] == {"loaded": 1, "quarantined": 1}
    assert totals["per_client"] == {"acme": 7, "": 3}
    assert totals["quarantined"] == ["b"]
    assert ingest.summarize([])["files"] == 0


def test_copy_error_line_is_read_from_the_error_context() -> None:
    class Diag:
        context = 'COPY events_log, line 17, column raw_event_data: "{...}"'

    class FakeCopyError(Exception):
        diag = Diag()

    assert copy_error_line(FakeCopyError("x")) == 17
    assert copy_error_line(Exception("no context")) is None


def test_fault_injection_only_inside_the_block() -> None:
    def boom(key: str) -> None:
        raise RuntimeError(key)

    with ingest_faults.inject("after_commit", boom), pytest.raises(RuntimeError, match="k"):
        ingest_faults.checkpoint("after_commit", "k")
    ingest_faults.checkpoint("after_commit", "k")  # removed again
    with pytest.raises(ValueError, match="unknown checkpoint"), ingest_faults.inject("nope", boom):
        pass
