"""Line rules of contract §2 (docs/contract.md): what passes, how it is normalised, why a line is rejected."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from events_pipeline.ingest.validation import (
    LineRejectedError,
    derive_path,
    parse_ip,
    parse_timestamp,
    replace_nul,
    validate_event,
)

GOOD = {
    "event_id": "6F1C3C2E-8A53-4C1B-9A35-2F4F3A1F0B7E",
    "event_type": "pageview",
    "timestamp": "2026-11-27T10:00:00.123Z",
    "site_id": "Shop.Acme.com:8443.",
    "session_id": "s1",
    "visitor_id": "v1",
    "url": "https://shop.acme.com/cart?x=1",
    "user_agent": "Mozilla/5.0",
    "ip_address": "203.0.113.7",
    "properties": {"a": [1, 2]},
}


def _with(**changes: Any) -> dict[str, Any]:
    event = dict(GOOD)
    for k, v in changes.items():
        if v is ...:
            event.pop(k, None)
        else:
            event[k] = v
    return event


def test_good_event_is_normalised() -> None:
    ev = validate_event(GOOD)
    assert ev.event_id == "6f1c3c2e-8a53-4c1b-9a35-2f4f3a1f0b7e"
    assert ev.timestamp == "2026-11-27T10:00:00.123000+00:00"
    assert ev.site_id == "shop.acme.com"
    assert ev.path == "/cart"
    assert ev.ip_address == "203.0.113.7"
    assert ev.batch_id is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"event_type": ...}, "event_type is missing"),
        ({"event_type": ""}, "event_type must be 1 to 50 characters long, is 0"),
        ({"event_type": "x" * 51}, "is 51"),
        ({"event_type": 5}, "event_type must be a string, got a number"),
        ({"timestamp": ...}, "timestamp is missing"),
        ({"timestamp": "yesterday"}, "is not an ISO-8601 date-time"),
        ({"timestamp": "2026-11-27T10:00:00"}, "has no UTC offset"),
        ({"timestamp": "2026-13-01T10:00:00Z"}, "is not an ISO-8601"),
        ({"timestamp": True}, "got a boolean"),
        ({"timestamp": 10**30}, "out of range"),
        ({"event_id": "not-a-uuid"}, "is not a UUID"),
        ({"event_id": 12}, "event_id must be a UUID string"),
        ({"session_id": "s" * 101}, "session_id is 101 characters long; at most 100"),
        ({"visitor_id": 42}, "visitor_id must be a string, got a number"),
        ({"path": "/" * 501}, "path is 501 characters long"),
        ({"url": ["x"]}, "url must be a string, got an array"),
        ({"user_agent": {"a": 1}}, "user_agent must be a string, got an object"),
        ({"ip_address": "999.1.1.1"}, "is not an IPv4 or IPv6 address"),
        ({"ip_address": "01.2.3.4"}, "is not an IPv4 or IPv6 address"),
        ({"ip_address": "fe80::1%eth0"}, "zone ids"),
        ({"ip_address": 3232235777}, "ip_address must be a string"),
        ({"site_id": 7}, "site_id must be a string"),
        ({"site_id": "a" * 300}, "site_id is 300 characters long"),
        ({"batch_id": "b" * 101}, "batch_id is 101 characters long"),
    ],
)
def test_rejections_name_the_field_and_the_rule(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(LineRejectedError) as exc:
        validate_event(_with(**changes))
    assert reason in str(exc.value)


@pytest.mark.parametrize("value", [[1], "text", 3, None])
def test_non_objects_are_rejected(value: Any) -> None:
    with pytest.raises(LineRejectedError, match="not a JSON object"):
        validate_event(value)


def test_optional_fields_may_be_absent_or_null() -> None:
    ev = validate_event(
        {"event_type": "e", "timestamp": 1795773600000, "session_id": None, "ip_address": None}
    )
    assert ev.timestamp == "2026-11-27T10:00:00+00:00"
    assert ev.session_id is None and ev.ip_address is None and ev.site_id is None and ev.path is None


def test_event_id_generated_deterministically_from_the_line_identity() -> None:
    a = validate_event(_with(event_id=...), line_id="b/k#e:7").event_id
    b = validate_event(_with(event_id=...), line_id="b/k#e:7").event_id
    c = validate_event(_with(event_id=...), line_id="b/k#e:8").event_id
    assert a == b != c
    assert uuid.UUID(a).version == 5


def test_site_id_taken_from_url_when_absent() -> None:
    ev = validate_event(_with(site_id=..., url="https://WWW.Acme.com.:8080/a/b"))
    assert ev.site_id == "www.acme.com"
    assert ev.path == "/a/b"


def test_explicit_path_is_kept() -> None:
    assert validate_event(_with(path="/custom")).path == "/custom"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T10:00:00Z", "2026-11-27T10:00:00+00:00"),
        ("2026-11-27T12:00:00+02:00", "2026-11-27T12:00:00+02:00"),
        ("2026-11-27T10:00:00.5-05:30", "2026-11-27T10:00:00.500000-05:30"),
        (0, "1970-01-01T00:00:00+00:00"),
        (1795773600123.0, "2026-11-27T10:00:00.123000+00:00"),
    ],
)
def test_parse_timestamp(value: Any, expected: str) -> None:
    assert parse_timestamp(value).isoformat() == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("203.0.113.7", "203.0.113.7"), ("2001:DB8::0:1", "2001:db8::1"), ("::ffff:1.2.3.4", "::ffff:1.2.3.4")],
)
def test_parse_ip_canonicalises(value: str, expected: str) -> None:
    assert parse_ip(value) == expected


@pytest.mark.parametrize("value", ["1.2.3", "1.2.3.4/32", " 1.2.3.4", "1.2.3.4\x00", "::g", "", "１.2.3.4"])
def test_parse_ip_is_strict(value: str) -> None:
    with pytest.raises(LineRejectedError):
        parse_ip(value)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://a.com/x/y?q=1#f", "/x/y"),
        ("https://a.com", None),
        ("https://a.com?x=/y", None),
        ("http://[::1]:80/p", "/p"),
        (" https://a.com/x", "/x"),
        ("https://a.com/" + "p" * 600, "/" + "p" * 499),
    ],
)
def test_derive_path(url: str, path: str | None) -> None:
    assert derive_path(url) == path


def test_replace_nul_everywhere_and_counts() -> None:
    value = {"a\x00": ["x\x00y", 1, {"k": "\x00"}], "b": "clean"}
    cleaned, count = replace_nul(value)
    assert cleaned == {"a\ufffd": ["x\ufffdy", 1, {"k": "\ufffd"}], "b": "clean"}
    assert count == 3
    assert replace_nul("clean") == ("clean", 0)
