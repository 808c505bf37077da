"""Batching of claims for dynamic task mapping, the run summary, the claim states, background moves."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from events_pipeline.common import failpoints as ingest_faults
from events_pipeline.ingest import pipeline
from events_pipeline.ingest.landing import Claim


def _claims(sizes: list[int]) -> list[Claim]:
    return [Claim(i, f"incoming/f{i}", "e", s, "claimed", 1, "t") for i, s in enumerate(sizes)]


def test_batches_are_bounded_and_balanced_by_bytes() -> None:
    claims = _claims([100, 90, 10, 10, 10, 10, 5, 5, 1])
    batches = pipeline.make_batches(claims, 3)
    assert len(batches) == 3
    assert sorted(c.file_id for b in batches for c in b) == list(range(9))
    totals = sorted(sum(c.size_bytes for c in b) for b in batches)
    assert totals[-1] <= 100 and totals[0] >= 30


def test_no_claims_no_batches() -> None:
    assert pipeline.make_batches([], 8) == []


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
    totals = pipeline.summarize(results)
    assert totals["rows_loaded"] == 10 and totals["files"] == 2
    assert totals["outcomes"] == {"loaded": 1, "quarantined": 1}
    assert totals["per_client"] == {"acme": 7, "": 3}
    assert totals["quarantined"] == ["b"]
    assert pipeline.summarize([])["files"] == 0


def test_fault_injection_only_inside_the_block() -> None:
    def boom(key: str) -> None:
        raise RuntimeError(key)

    with ingest_faults.inject("after_commit", boom), pytest.raises(RuntimeError, match="k"):
        ingest_faults.checkpoint("after_commit", "k")
    ingest_faults.checkpoint("after_commit", "k")  # removed again
    with pytest.raises(ValueError, match="unknown checkpoint"), ingest_faults.inject("nope", boom):
        pass


def test_every_claim_state_has_its_step() -> None:
    assert set(pipeline._STEPS) == set(pipeline.ClaimState)


class _Moves:
    """Fakes of process_claim and the S3 move: every file loads; moves are watched."""

    def __init__(self, n: int, fail: int | None = None) -> None:
        self.load_started = [threading.Event() for _ in range(n)]
        self.fail = fail
        self.running = 0
        self.most_at_once = 0
        self.finished: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def process_claim(self, conn: Any, client: Any, bucket: str, claim: Claim, **kwargs: Any) -> Any:
        assert kwargs["defer_move"] is True
        self.load_started[claim.file_id].set()
        dest = f"processed/f{claim.file_id}"
        return pipeline.FileResult(claim.key, claim.file_id, pipeline.LOADED, dest_key=dest)

    def move_object(
        self, client: Any, bucket: str, src: str, dest: str, etag: str | None, size_bytes: int | None = None
    ) -> str:
        n = int(src.rsplit("f", 1)[1])
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            # file n's move waits until file n+1's load has started: it must overlap that load
            if n + 1 < len(self.load_started):
                assert self.load_started[n + 1].wait(10), f"the move of f{n} did not overlap the next load"
            if n == self.fail:
                raise OSError(f"S3 connection reset moving {src}")
            return "moved"
        finally:
            with self._lock:
                self.running -= 1

    def finish_move(self, conn: Any, claim: Claim, result: Any, how: str) -> None:
        self.finished.append((claim.file_id, how))
        result.move = None


def _patch_moves(monkeypatch: pytest.MonkeyPatch, moves: _Moves) -> list[str]:
    recorded: list[str] = []
    monkeypatch.setattr(pipeline, "process_claim", moves.process_claim)
    monkeypatch.setattr(pipeline.landing, "move_object", moves.move_object)
    monkeypatch.setattr(pipeline, "_finish_move", moves.finish_move)
    monkeypatch.setattr(pipeline, "_record_error", lambda conn, claim, detail: recorded.append(detail))
    return recorded


def test_each_move_overlaps_the_next_load_one_move_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    moves = _Moves(3)
    _patch_moves(monkeypatch, moves)
    results = pipeline.load_claims(
        object(), object(), "bucket", _claims([1, 1, 1]), lease_minutes=1, max_attempts=1
    )
    assert [r.outcome for r in results] == [pipeline.LOADED] * 3
    assert moves.finished == [(0, "moved"), (1, "moved"), (2, "moved")]
    assert moves.most_at_once == 1
    assert all(r.move is None for r in results)


def test_a_failed_background_move_fails_that_file_only(monkeypatch: pytest.MonkeyPatch) -> None:
    moves = _Moves(3, fail=1)
    recorded = _patch_moves(monkeypatch, moves)
    results = pipeline.load_claims(
        object(), object(), "bucket", _claims([1, 1, 1]), lease_minutes=1, max_attempts=1
    )
    assert [r.outcome for r in results] == [pipeline.LOADED, pipeline.FAILED, pipeline.LOADED]
    assert results[1].detail == "OSError: S3 connection reset moving incoming/f1"
    assert recorded == [results[1].detail]
    assert moves.finished == [(0, "moved"), (2, "moved")]
