"""``gdpr_ingest.IpProtector``: IPv6 text exactly as ``ipaddress`` writes it (the reference), pseudonyms
of canonical texts, and the GDPR text edit against the re-serialised treatment."""

from __future__ import annotations

import ipaddress

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events_pipeline.privacy.fast_treatment import IpProtector
from events_pipeline.privacy.ip_treatment import ip_pseudonym, truncate_ip

SECRET = "unit-test-secret-unit-test-secret"
# groups drawn mostly from 0 so zero runs of every length and position occur
_group = st.one_of(st.just(0), st.just(0), st.integers(0, 0xFFFF))
_ipv6 = st.lists(_group, min_size=8, max_size=8).map(
    lambda g: str(ipaddress.IPv6Address(b"".join(x.to_bytes(2, "big") for x in g)))
)


@settings(max_examples=500)
@given(ip=_ipv6)
def test_ipv6_text_equals_ipaddress(ip: str) -> None:
    truncated, pseudonym, _ = IpProtector(SECRET).treat(ip)
    assert truncated == truncate_ip(ip)
    assert pseudonym == ip_pseudonym(ip, SECRET)


@given(ip=_ipv6)
def test_exploded_and_upper_case_input(ip: str) -> None:
    exploded = ipaddress.IPv6Address(ip).exploded.upper()
    assert IpProtector(SECRET).treat(exploded) == IpProtector(SECRET).treat(ip)


# (an IPv4-mapped IPv6 address is hashed in its IPv4 form: treat() finds that canonical text)
_unmapped_ipv6 = _ipv6.filter(lambda ip: ipaddress.IPv6Address(ip).ipv4_mapped is None)


@given(ips=st.lists(st.one_of(st.ip_addresses(v=4).map(str), _unmapped_ipv6), max_size=5))
def test_pseudonyms_of_canonical_texts_equal_treat(ips: list[str]) -> None:
    protector = IpProtector(SECRET)
    assert protector.pseudonyms(ips) == [protector.treat(ip)[1] for ip in ips]
    assert protector.pseudonyms(ips) == [ip_pseudonym(ip, SECRET) for ip in ips]


@pytest.mark.parametrize(
    "line",
    [
        '{"a":1,"ip_address":"203.0.113.77","b":[1,2]}',
        '{"a":1.50,"ip_address":"203.0.113.77","e":1E5,"u":"é"}',
        '{ "ip_address" :\t"203.0.113.77" , "b":null }  ',
        '{"ip_address":"2001:db8:1:2::5"}',
        '{"ip_address":"203.0.113.0","b":1}',
    ],
)
def test_text_edit_equals_the_reserialised_treatment(line: str) -> None:
    protector = IpProtector(SECRET)
    ip = orjson.loads(line)["ip_address"]
    edited = protector.protect_text(line, ip)
    assert edited is not None
    text, truncated = edited
    expected, expected_ip = protector.protect_event(orjson.loads(line), ip)
    assert truncated == expected_ip
    # same members, values and order; only the address and the added pseudonym differ from the line
    assert list(orjson.loads(text).items()) == list(expected.items())
    assert ip not in text or ip == truncated


@pytest.mark.parametrize(
    "line",
    [
        '{"ip_address":"203.0.113.77","p":{"ip_address":"203.0.113.77"}}',
        '{"note":"ip_address","ip_address":"203.0.113.77"}',
        '{"ip\\u005faddress":"203.0.113.77","p":{"ip_address":"203.0.113.77"}}',
        '{"ip_address":"203.0.113.77","q":"a\\"b"}',
        '{"ip_address":"203.0.113.77","ip_pseudonym":"given"}',
    ],
)
def test_ambiguous_text_is_left_to_reserialisation(line: str) -> None:
    assert IpProtector(SECRET).protect_text(line, "203.0.113.77") is None
