"""What an answer of the pixel management service does (pure), which sites are asked, the settings."""

from __future__ import annotations

import pytest

from events_pipeline.attribution.pixel_management import DEFERRED, ERROR, FOUND, MALFORMED, NOT_FOUND, Answer
from events_pipeline.attribution.sync import Current, SyncSettings, askable, decide
from events_pipeline.common.errors import SettingError

SERVICE = Current("acme", "pixel_management")
MANUAL = Current("acme", "manual")
UNKNOWN = "unknown_client"


@pytest.mark.parametrize(
    ("answer", "current", "known", "outcome", "problem", "applied", "cache"),
    [
        # a known client
        (Answer("d.example", FOUND, "acme"), None, True, "mapped", None, True, None),
        (Answer("d.example", FOUND, "acme"), SERVICE, True, "confirmed", None, False, None),
        (Answer("d.example", FOUND, "acme"), MANUAL, True, "unchanged", None, False, None),
        (Answer("d.example", FOUND, "globex"), SERVICE, True, "moved", "move", True, None),
        (Answer("d.example", FOUND, "globex"), MANUAL, True, "problem", "move", False, "move"),
        # answers that do not fit
        (Answer("d.example", FOUND, "zeta"), None, False, "problem", UNKNOWN, False, UNKNOWN),
        (Answer("d.example", FOUND, "zeta"), SERVICE, False, "problem", UNKNOWN, False, UNKNOWN),
        (Answer("d.example", MALFORMED, None, "x"), None, False, "problem", "malformed", False, "malformed"),
        # 404
        (Answer("d.example", NOT_FOUND), None, False, "not_found", None, False, "not_found"),
        (Answer("d.example", NOT_FOUND), SERVICE, False, "problem", "withdrawn", False, "withdrawn"),
        (Answer("d.example", NOT_FOUND), MANUAL, False, "not_found", None, False, "not_found"),
        # no answer: nothing recorded, asked again next run
        (Answer("d.example", ERROR, None, "HTTP 503"), None, False, "error", None, False, None),
        (Answer("d.example", DEFERRED), SERVICE, False, "deferred", None, False, None),
    ],
)
def test_decide(answer, current, known, outcome, problem, applied, cache):
    decision = decide(answer, current, known)
    assert (decision.outcome, decision.problem, decision.applied, decision.cache) == (
        outcome,
        problem,
        applied,
        cache,
    )
    assert "d.example" in decision.message


def test_decision_messages_name_domain_and_both_clients():
    move = decide(Answer("d.example", FOUND, "globex"), SERVICE, True).message
    assert "domain d.example moved from client acme to client globex" in move
    kept = decide(Answer("d.example", FOUND, "globex"), MANUAL, True).message
    assert "client globex" in kept and "mapped to acme (manual)" in kept and "not applied" in kept
    unknown = decide(Answer("d.example", FOUND, "zeta"), None, False).message
    assert "client zeta, which is not in clients" in unknown


@pytest.mark.parametrize(
    ("site", "ok"),
    [
        ("shop.acme.com", True),
        ("xn--bcher-kva.example", True),
        ("localhost", True),
        ("203.0.113.5", True),
        ("2001:db8::1", False),  # cannot be a client_domains row
        ("a b.example", False),
        ("a..example", False),
        (".example", False),
        ("example.", False),
        ("a/b", False),
        ("a%2fb", False),
        ("x" * 254, False),
        ("", False),
        (None, False),
    ],
)
def test_askable(site, ok):
    assert askable(site) is ok


def test_settings_defaults():
    settings = SyncSettings.from_variables()
    assert (settings.lookback_hours, settings.negative_ttl_minutes, settings.concurrency) == (24, 60, 8)
    assert (settings.policy.timeout_s, settings.policy.max_retries, settings.max_sites) == (5.0, 3, 500)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("events_attribution_concurrency", "0", "out of range"),
        ("events_attribution_timeout_seconds", "-1", "out of range"),
        ("events_attribution_negative_ttl_minutes", "soon", "not a valid int"),
    ],
)
def test_a_bad_setting_names_its_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)
    with pytest.raises(SettingError, match=f"'{name}'.*{message}"):
        SyncSettings.from_variables()
