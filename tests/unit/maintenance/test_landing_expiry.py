"""Landing-object expiry: its settings, and a prefix turned off."""

from __future__ import annotations

from datetime import UTC, datetime

from events_pipeline.common.settings import SETTINGS
from events_pipeline.maintenance.landing_expiry import expire_prefix, keep_days_settings


def test_each_prefix_has_its_own_keep_days_with_defaults():
    assert {
        n: SETTINGS[n].default
        for n in SETTINGS
        if n.startswith(("events_landing_keep", "events_landing_exp"))
    } == {
        "events_landing_keep_processed_days": 7,
        "events_landing_keep_rejected_days": 30,
        "events_landing_keep_quarantine_days": 30,
        "events_landing_expiry_max_deletes": 100_000,
    }
    assert keep_days_settings("processed/", "rejected/", "quarantine/") == {
        "processed/": 7,
        "rejected/": 30,
        "quarantine/": 30,
    }


def test_keep_days_come_from_the_variables(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_LANDING_KEEP_REJECTED_DAYS", "90")
    assert keep_days_settings("p/", "r/", "q/")["r/"] == 90


def test_a_negative_keep_days_lists_nothing():
    class NoS3:
        def get_paginator(self, name):
            raise AssertionError("a prefix that is off is not even listed")

    result = expire_prefix(NoS3(), "landing", "processed/", -1, now=datetime.now(UTC), max_deletes=10)
    assert (result.deleted, result.cutoff) == (0, None)
