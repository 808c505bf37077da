"""Landing key layout and claim (de)serialisation."""

from __future__ import annotations

import pytest

from events_pipeline.ingest.landing import (
    Claim,
    error_key,
    processed_key,
    quarantine_key,
    rejected_key,
    sub_path,
)


def test_key_layout_keeps_the_sub_path() -> None:
    key = "incoming/2026/11/27/batch-1.ndjson.gz"
    assert sub_path(key) == "2026/11/27/batch-1.ndjson.gz"
    assert processed_key(key, 17) == "processed/2026/11/27/batch-1.f17.ndjson.gz"
    assert rejected_key(key, 17) == "rejected/2026/11/27/batch-1.f17.ndjson.gz.rejected.ndjson"
    assert quarantine_key(key) == "quarantine/2026/11/27/batch-1.ndjson.gz"
    assert error_key(key) == "quarantine/2026/11/27/batch-1.ndjson.gz.error.json"


def test_keys_outside_incoming_are_refused() -> None:
    with pytest.raises(ValueError, match="not under incoming/"):
        processed_key("processed/a.ndjson", 1)


def test_claim_round_trips_through_xcom_dicts() -> None:
    claim = Claim(7, "incoming/a.ndjson", "abc", 10, "claimed", 1, "host/run/1")
    assert Claim.from_dict(claim.as_dict()) == claim
    assert claim.as_dict()["reupload"] is False
    # a claim serialised before dest_key existed (an XCom of a run started before a deploy)
    old = {k: v for k, v in claim.as_dict().items() if k != "dest_key"}
    assert Claim.from_dict(old) == claim
