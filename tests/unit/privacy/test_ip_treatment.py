"""GDPR IP treatment: truncation, pseudonyms, embedded IPv4, event treatment; the fast path equals it."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events_pipeline.common.errors import SettingError
from events_pipeline.privacy.fast_treatment import IpProtector
from events_pipeline.privacy.ip_treatment import (
    embedded_ipv4,
    ip_pseudonym,
    is_truncated,
    protect_event,
    truncate_ip,
)

SECRET = "unit-test-secret-unit-test-secret"


@pytest.mark.parametrize(
    ("ip", "truncated"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("10.0.0.0", "10.0.0.0"),
        ("2001:db8:1:2::5", "2001:db8:1::"),
        ("2001:DB8:ABCD:1234:5678::1", "2001:db8:abcd::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        ("::1", "::"),
        (" 1.2.3.4 ", "1.2.3.0"),
    ],
)
def test_truncate_ip(ip: str, truncated: str) -> None:
    assert truncate_ip(ip) == truncated
    assert is_truncated(truncated)


def test_truncate_ip_rejects_non_ips() -> None:
    with pytest.raises(ValueError):
        truncate_ip("not an ip")
    assert not is_truncated("not an ip")


def test_pseudonym_is_keyed_stable_and_canonical() -> None:
    a = ip_pseudonym("1.2.3.4", SECRET)
    assert a == ip_pseudonym("::ffff:1.2.3.4", SECRET) == ip_pseudonym(" 1.2.3.4", SECRET)
    assert a != ip_pseudonym("1.2.3.4", "other-secret-other-secret-other-secret")
    assert a != ip_pseudonym("1.2.3.5", SECRET)
    assert len(a) == 32 and int(a, 16) >= 0
    with pytest.raises(SettingError, match="events_ip_hash_secret"):
        ip_pseudonym("1.2.3.4", "")


def test_protect_event_removes_the_raw_ip_and_adds_a_pseudonym() -> None:
    raw = {"ip_address": "203.0.113.77", "nested": {"x": 1}}
    out, ip = protect_event(raw, "203.0.113.77", SECRET)
    assert ip == "203.0.113.0"
    assert out["ip_address"] == "203.0.113.0"
    assert out["ip_pseudonym"] == ip_pseudonym("203.0.113.77", SECRET)
    assert "203.0.113.77" not in repr(out)


def test_protect_event_is_idempotent() -> None:
    once, ip1 = protect_event({"ip_address": "2001:db8:1:2::5"}, None, SECRET)
    snapshot = dict(once)
    twice, ip2 = protect_event(once, ip1, SECRET)
    assert twice == snapshot and ip1 == ip2 == "2001:db8:1::"


def test_protect_event_without_ip_changes_nothing() -> None:
    assert protect_event({"a": 1}, None, SECRET) == ({"a": 1}, None)
    assert protect_event({"ip_address": ""}, None, SECRET) == ({"ip_address": ""}, None)


_ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
_ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
_mapped = st.integers(0, 2**32 - 1).map(lambda n: f"::ffff:{ipaddress.IPv4Address(n)}")
#: 6to4, Teredo and NAT64 addresses around a random IPv4 (and random other bits)
_embedding = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)).flatmap(
    lambda v: st.sampled_from(
        [
            str(ipaddress.IPv6Address((0x2002 << 112) | (v[0] << 80) | (v[1] & (2**80 - 1)))),
            str(
                ipaddress.IPv6Address((0x20010000 << 96) | ((v[1] & (2**64 - 1)) << 32) | (v[0] ^ 0xFFFFFFFF))
            ),
            str(ipaddress.IPv6Address((0x0064FF9B << 96) | v[0])),
        ]
    )
)
_special = st.sampled_from(
    [
        "0.0.0.0",  # noqa: S104 - an address to treat, not a bind
        "::",
        "::1",
        "::1.2.3.4",
        "1.2.3.0",
        "2001:db8:1::",
        "::ffff:0.0.0.0",
    ]
)


@settings(max_examples=400)
@given(ip=st.one_of(_ipv4, _ipv6, _mapped, _embedding, _special), has_pseudonym=st.booleans())
def test_ingest_fast_path_equals_privacy_protect_event(ip: str, has_pseudonym: bool) -> None:
    base = {"ip_address": ip, "k": "v"}
    if has_pseudonym:
        base["ip_pseudonym"] = "given"
    reference = protect_event(dict(base), ip, SECRET)
    fast = IpProtector(SECRET).protect_event(dict(base), ip)
    assert fast == reference


def test_fast_path_needs_a_secret() -> None:
    with pytest.raises(SettingError, match="events_ip_hash_secret"):
        IpProtector("")


#: 203.0.113.77 as 6to4, Teredo (client address inverted in the last 32 bits) and NAT64.
EMBEDDING_203_0_113_77 = [
    "2002:cb00:714d::",
    "2002:cb00:714d:1234:5678::9",
    "2001:0:4136:e378:8000:63bf:34ff:8eb2",
    "64:ff9b::cb00:714d",
    "64:ff9b::203.0.113.77",
]


@pytest.mark.parametrize("ip", EMBEDDING_203_0_113_77)
def test_addresses_that_embed_an_ipv4_are_treated_as_that_ipv4(ip: str) -> None:
    assert embedded_ipv4(ipaddress.IPv6Address(ip)) == ipaddress.IPv4Address("203.0.113.77")
    assert truncate_ip(ip) == "203.0.113.0"
    assert ip_pseudonym(ip, SECRET) == ip_pseudonym("203.0.113.77", SECRET)
    out, truncated = protect_event({"ip_address": ip}, ip, SECRET)
    assert truncated == "203.0.113.0" and out["ip_address"] == "203.0.113.0"
    assert "cb00:714d" not in repr(out) and "34ff:8eb2" not in repr(out)
    assert IpProtector(SECRET).treat(ip) == ("203.0.113.0", ip_pseudonym("203.0.113.77", SECRET), False)


@pytest.mark.parametrize("ip", ["2001:db8:1:2::5", "2003:cb00:714d::", "64:ff9c::cb00:714d", "::1"])
def test_other_ipv6_addresses_keep_their_48_bit_treatment(ip: str) -> None:
    assert embedded_ipv4(ipaddress.IPv6Address(ip)) is None
    assert ipaddress.ip_address(truncate_ip(ip)).version == 6


@pytest.mark.parametrize("make", [IpProtector, lambda key: ip_pseudonym("1.2.3.4", key)])
def test_a_key_shorter_than_32_bytes_fails_naming_the_variable_and_how_to_make_one(make) -> None:
    with pytest.raises(SettingError) as caught:
        make("k" * 31)
    message = str(caught.value)
    assert "'events_ip_hash_secret' is 31 bytes long" in message
    assert "at least 32 bytes" in message and "secrets.token_hex(32)" in message
    assert "AIRFLOW_VAR_EVENTS_IP_HASH_SECRET" in message
    make("k" * 32)  # 32 bytes are enough
    make("é" * 16)  # bytes, not characters
