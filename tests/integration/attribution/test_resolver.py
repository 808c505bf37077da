"""The resolver on its own against a real HTTP server: what is retried, what is not, budgets, 429 for all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools import devstack
from events_pipeline.attribution.pixel_management import (
    DEFERRED,
    ERROR,
    FOUND,
    NOT_FOUND,
    RetryPolicy,
    ServiceConfig,
    resolve_sites,
)

from .conftest import Reply, ScriptedService

FAST = RetryPolicy(timeout_s=1.0, max_retries=2, backoff_s=0.02, max_retry_after_s=5)


@pytest.fixture
def svc() -> Iterator[ScriptedService]:
    s = ScriptedService({"acme.com": "acme"})
    yield s
    s.stop()


def _config(port: int) -> ServiceConfig:
    return ServiceConfig("pixel_management", f"http://127.0.0.1:{port}", {"Accept": "application/json"})


def _resolve(port: int, sites: list[str], **kwargs) -> dict:
    kwargs.setdefault("policy", FAST)
    kwargs.setdefault("concurrency", 2)
    kwargs.setdefault("budget_s", 30)
    return {a.site: a for a in resolve_sites(_config(port), sites, **kwargs)}


def test_each_site_gets_one_answer(svc):
    answers = _resolve(svc.port, ["acme.com", "shop.acme.com", "nobody.example"])
    assert {s: (a.kind, a.client_id) for s, a in answers.items()} == {
        "acme.com": (FOUND, "acme"),
        "shop.acme.com": (FOUND, "acme"),
        "nobody.example": (NOT_FOUND, None),
    }


def test_client_errors_other_than_429_are_not_retried(svc):
    svc.script("acme.com", Reply(400, {"error": "bad domain"}))
    svc.script("shop.acme.com", Reply(301, headers={"Location": "http://elsewhere/"}))
    answers = _resolve(svc.port, ["acme.com", "shop.acme.com"])
    assert answers["acme.com"].kind == ERROR and "HTTP 400" in answers["acme.com"].detail
    assert answers["shop.acme.com"].kind == ERROR and "HTTP 301" in answers["shop.acme.com"].detail
    assert svc.asked("acme.com") == svc.asked("shop.acme.com") == 1


def test_retries_stop_after_max_retries(svc):
    svc.script("acme.com", *[Reply(502, "bad gateway")] * 5)
    answer = _resolve(svc.port, ["acme.com"])["acme.com"]
    assert answer.kind == ERROR and answer.attempts == 3
    assert "HTTP 502" in answer.detail and "after 3 attempts" in answer.detail


def test_a_retry_after_beyond_the_cap_ends_the_site_for_this_run(svc):
    svc.script("acme.com", Reply(429, headers={"Retry-After": "600"}))
    answer = _resolve(svc.port, ["acme.com"])["acme.com"]
    assert answer.kind == ERROR and "Retry-After 600 s" in answer.detail
    assert svc.asked("acme.com") == 1


def test_a_429_holds_back_every_worker(svc):
    svc.script("acme.com", Reply(429, headers={"Retry-After": "1"}))
    svc.script("shop.acme.com", Reply(500, delay=0.2))
    answers = _resolve(svc.port, ["acme.com", "shop.acme.com"])
    assert {a.kind for a in answers.values()} == {FOUND}
    first_429 = svc.times("acme.com")[0]
    retry_of_other = svc.times("shop.acme.com")[1]
    assert retry_of_other - first_429 >= 0.95, "the other worker did not wait for the Retry-After"


def test_sites_not_started_within_the_budget_are_deferred(svc):
    sites = [f"s{i}.acme.com" for i in range(6)]
    for site in sites:
        svc.script(site, Reply(200, {"client_id": "acme"}, delay=0.6))
    answers = _resolve(svc.port, sites, concurrency=2, budget_s=0.3)
    kinds = [answers[s].kind for s in sites]
    assert kinds.count(FOUND) == 2 and kinds.count(DEFERRED) == 4
    assert len(svc.requests) == 2


def test_connection_refused_is_retried_then_an_error():
    port = devstack.free_port()  # nothing listens there
    answer = _resolve(port, ["acme.com"])["acme.com"]
    assert answer.kind == ERROR and answer.attempts == 3
    assert "connection error: ConnectError" in answer.detail
