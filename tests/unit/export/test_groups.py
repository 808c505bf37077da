"""Planning many clients into groups, naming them, and reading the trigger form (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events_pipeline.common.run_params import ParamError
from events_pipeline.export.groups import (
    MAX_LABEL,
    ExportGroup,
    GroupExportError,
    GroupOutcome,
    PermanentGroupExportError,
    _pack,
    asset_event,
    form_request,
    raise_for_failures,
)

NOW = datetime(2026, 11, 27, 12, 30, tzinfo=UTC)
START, END = datetime(2026, 11, 27, 9, tzinfo=UTC), datetime(2026, 11, 27, 10, tzinfo=UTC)


def test_packing_balances_rows_and_keeps_every_client_once():
    rows = [{"client_id": f"c{i:03d}", "rows": (i * 7919) % 5000} for i in range(1000)]
    bins = _pack(rows, 8, cost_rows=100)
    assert len(bins) == 8
    assert sorted(r["client_id"] for _w, members in bins for r in members) == [r["client_id"] for r in rows]
    weights = [w for w, _m in bins]
    assert max(weights) - min(weights) <= 5000 + 100  # at most one client apart


def test_one_heavy_client_gets_a_group_of_its_own():
    rows = [{"client_id": "big", "rows": 1_000_000}] + [{"client_id": f"s{i}", "rows": 10} for i in range(50)]
    bins = _pack(rows, 4, cost_rows=100)
    big = next(members for _w, members in bins if any(r["client_id"] == "big" for r in members))
    assert [r["client_id"] for r in big] == ["big"]


def test_fewer_clients_than_groups_give_one_group_each():
    assert len(_pack([{"client_id": "a", "rows": 1}, {"client_id": "b", "rows": 0}], 8, cost_rows=10)) == 2


def test_a_groups_label_names_its_clients_within_the_ui_limit():
    assert ExportGroup(0, ["acme", "globex"]).label == "g01: acme,globex"
    assert ExportGroup(2, ["flaky"], suspect=True).label == "g03!: flaky"
    many = ExportGroup(9, [f"client_{i:04d}" for i in range(200)])
    assert len(many.label) <= MAX_LABEL and many.label.startswith("g10: client_0000,") and "(+" in many.label


def test_without_form_hours_the_run_exports_its_own_hour():
    request = form_request({}, START, END, now=NOW)
    assert [h.start for h in request.hours] == [START] and request.clients is None
    assert request.allow_shrink is None


def test_the_form_gives_clients_and_an_hour_range():
    params = {
        "clients": ["globex", "acme", "acme"],
        "first_hour": "2026-11-27T07:00:00Z",
        "last_hour": "2026-11-27T09:00:00Z",
    }
    request = form_request(params, START, END, now=NOW)
    assert request.clients == ("acme", "globex")
    assert [h.start.hour for h in request.hours] == [7, 8, 9]


def test_allow_shrink_is_recorded_with_the_run_the_user_and_the_reason():
    params = {
        "clients": ["acme"],
        "first_hour": "2026-11-27T07:00:00Z",
        "allow_shrink": True,
        "reason": "INC-1",
    }
    request = form_request(params, START, END, run_id="manual__x", user="alice", now=NOW)
    assert request.allow_shrink == "run manual__x triggered by alice: INC-1"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"first_hour": "2026-11-27T07:15:00Z"}, "first_hour"),
        ({"first_hour": "yesterday"}, "first_hour"),
        ({"last_hour": "2026-11-27T07:00:00Z"}, "last_hour"),
        ({"first_hour": "2026-11-27T09:00:00Z", "last_hour": "2026-11-27T07:00:00Z"}, "last_hour"),
        ({"first_hour": "2026-11-27T12:00:00Z"}, "last_hour"),  # not ended yet at 12:30
        ({"first_hour": "2026-11-01T00:00:00Z", "last_hour": "2026-11-27T00:00:00Z"}, "first_hour"),
        ({"clients": ["Not A Client"]}, "clients"),
        ({"allow_shrink": True}, "allow_shrink"),
    ],
)
def test_a_wrong_form_value_names_its_field(params, field):
    with pytest.raises(ParamError, match=f"'{field}'"):
        form_request(params, START, END, now=NOW)


def test_failures_are_raised_at_the_end_naming_each_client():
    outcome = GroupOutcome("g01: a,b,c")
    outcome.failed = [("b", START.isoformat(), "ExportError: boom")]
    outcome.permanent = [False]
    with pytest.raises(GroupExportError, match=r"\(b\).*boom.*exports only these clients") as exc:
        raise_for_failures(outcome)
    assert not isinstance(exc.value, PermanentGroupExportError)
    outcome.permanent = [True]
    with pytest.raises(PermanentGroupExportError, match="no retry"):
        raise_for_failures(outcome)
    assert raise_for_failures(GroupOutcome("g02: d"))["failed"] == []


def test_an_asset_event_carries_the_hours_figures():
    summary = {
        "client_id": "acme",
        "interval_start": START.isoformat(),
        "rows": 12,
        "bytes": 3456,
        "parts": 1,
        "manifest": "s3://acme-exports/events/v1/dt=2026-11-27/hour=09/_manifest.json",
        "backup_manifest": "s3://backup/acme/dt=2026-11-27/hour=09/_manifest.json",
    }
    uri, extra = asset_event(summary)
    assert uri == "s3://acme-exports/events/v1"
    assert extra == {
        "client_id": "acme",
        "interval_start": START.isoformat(),
        "rows": 12,
        "bytes": 3456,
        "parts": 1,
        "manifest_key": summary["manifest"],
        "backup_manifest_key": summary["backup_manifest"],
    }
