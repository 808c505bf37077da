"""Every IP literal value of an event is treated (contract §6.3), as an edit of its text.

``IpProtector.protect_line`` (ingest, sweep, re-attribution) must give what the
reference ``ip_treatment.protect_event`` gives for the decoded event - every string
value that is an IP literal, at any depth, truncated; the pseudonym from the
top-level address - while keeping every other byte of the text (numbers included).
"""

from __future__ import annotations

import ipaddress
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events_pipeline.privacy.fast_treatment import IpProtector, protect_rejected_line, scrub_ips
from events_pipeline.privacy.ip_treatment import ip_literal, ip_pseudonym, protect_event, truncate_ip

SECRET = "unit-test-secret-unit-test-secret"


def _treat(line: str, ip: str | None) -> tuple[str, str | None]:
    text, truncated = IpProtector(SECRET).protect_line(line, ip)
    reference, reference_ip = protect_event(orjson.loads(line), ip, SECRET)
    assert truncated == reference_ip
    assert list(orjson.loads(text).items()) == list(reference.items()), text
    return text, truncated


def test_a_nested_copy_of_the_address_is_treated_too() -> None:
    line = '{"ip_address":"203.0.113.78","context":{"ip":"203.0.113.78"}}'
    text, truncated = _treat(line, "203.0.113.78")
    pseudonym = ip_pseudonym("203.0.113.78", SECRET)
    assert truncated == "203.0.113.0"
    assert text == (
        f'{{"ip_address":"203.0.113.0","context":{{"ip":"203.0.113.0"}},"ip_pseudonym":"{pseudonym}"}}'
    )


@pytest.mark.parametrize(
    ("line", "raw_ips"),
    [
        # repeated, at several depths and in arrays
        (
            '{"ip_address":"198.51.100.7","a":{"b":{"c":["198.51.100.7","10.1.2.3"]}},"d":["x",["2001:db8:1:2::5"]]}',
            ["198.51.100.7", "10.1.2.3", "2001:db8:1:2::5"],
        ),
        # JSON-escaped spellings: the same strings once decoded
        ('{"ip_address":"203.0.113.78","c":{"ip":"203\\u002e0.113.78"}}', ["203.0.113.78", "203\\u002e0"]),
        (
            '{"c":{"ip":"\\u0032\\u0030\\u0033.0.113.78"},"ip_address":"203.0.113.78"}',
            ["203.0.113.78", "u0032"],
        ),
        # IPv6 forms and the ones embedding an IPv4 address (treated as that address)
        ('{"x":"2001:DB8:abcd:12::1","y":"::ffff:203.0.113.77"}', ["2001:DB8:abcd:12::1", "203.0.113.77"]),
        ('{"x":["2002:cb00:714d::1","64:ff9b::cb00:714d","2001:0:4136:e378:8000:63bf:34ff:8eb2"]}', ["cb00"]),
        # surrounding whitespace is ignored
        ('{"x":" 203.0.113.9\\t"}', ["203.0.113.9"]),
        # a top-level ip_address repeated: every copy is treated
        ('{"ip_address":"1.2.3.4","ip_address":"5.6.7.8"}', ["1.2.3.4", "5.6.7.8"]),
    ],
)
def test_every_ip_literal_value_is_truncated(line: str, raw_ips: list[str]) -> None:
    ip = orjson.loads(line).get("ip_address")
    text, _ = _treat(line, ip)
    for raw in raw_ips:
        assert raw not in text


@pytest.mark.parametrize(
    "line",
    [
        # an address inside other text, and keys, are kept (contract §6.3)
        '{"url":"http://203.0.113.7/x","ua":"Chrome 10.0.1.2.3","xff":"203.0.113.7, 10.0.0.1"}',
        '{"203.0.113.7":1,"zone":"fe80::1%eth0","time":"10:30:00","v":"1.2.3"}',
        # numbers stay exactly as written
        '{"n":18446744073709551616,"f":1.0000000000000000001,"e":-1E+400,"z":-0.0}',
    ],
)
def test_other_strings_keys_and_numbers_are_kept_byte_for_byte(line: str) -> None:
    assert IpProtector(SECRET).protect_line(line, None) == (line, None)


def test_numbers_and_spacing_survive_the_edit() -> None:
    line = (
        '{ "n" : 18446744073709551616 , "ip_address" : "203.0.113.78", "p": [1.0000000000000000001, -1e400] }'
    )
    text, _ = IpProtector(SECRET).protect_line(line, "203.0.113.78")
    assert text.startswith('{ "n" : 18446744073709551616 , "ip_address" : "203.0.113.0", ')
    assert '"p": [1.0000000000000000001, -1e400] ,"ip_pseudonym":"' in text


def test_the_treatment_is_idempotent() -> None:
    line = '{"ip_address":"2001:db8:1:2::5","n":{"ip":"203.0.113.7"},"a":["::ffff:1.2.3.4"]}'
    once, ip = IpProtector(SECRET).protect_line(line, "2001:db8:1:2::5")
    assert IpProtector(SECRET).protect_line(once, ip) == (once, ip)


def test_the_sweep_rule_for_a_top_level_value_that_is_no_ip() -> None:
    text, ip, invalid = IpProtector(SECRET).protect_stored('{"ip_address":"bogus","n":"1.2.3.4"}', None)
    assert (ip, invalid) == (None, True)
    assert orjson.loads(text) == {"ip_address": None, "n": "1.2.3.0"}


_octet = st.integers(0, 255)
_ipv4 = st.tuples(_octet, _octet, _octet, _octet).map(lambda t: ".".join(map(str, t)))
_ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
_scalar = st.one_of(
    _ipv4,
    _ipv6,
    _ipv4.map(lambda ip: f" {ip} "),
    _ipv6.map(lambda ip: ip.upper()),
    st.text("0123456789abcdef:. x/%", max_size=20),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text("abip_", max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(
    event=st.dictionaries(st.sampled_from(["a", "b", "ctx", "ip_pseudonym"]), _value, max_size=4),
    ip=st.one_of(st.none(), _ipv4, _ipv6),
    escape=st.booleans(),
)
def test_text_edit_equals_the_reference_treatment(event: dict, ip: str | None, escape: bool) -> None:
    if ip is not None:
        event["ip_address"] = ip
    line = json.dumps(event, separators=(",", ":"))  # (orjson cannot write integers beyond 64 bits)
    if escape:  # the same JSON with every "." escaped
        line = line.replace(".", "\\u002e")
    _treat(line, ip)


@settings(max_examples=300)
@given(text=st.one_of(_ipv4, _ipv6, st.text("0123456789abcdefABCDEF:. \t", max_size=50)))
def test_ip_literal_agrees_with_the_fast_truncation(text: str) -> None:
    from events_pipeline.privacy.fast_treatment import truncate_literal

    expected = truncate_ip(text.strip(" \t\r\n")) if ip_literal(text) is not None else None
    assert truncate_literal(text) == expected


def test_a_rejected_json_line_keeps_no_ip_and_no_invalid_address() -> None:
    line = '{"ip_address":"203.0.113.077","ctx":{"ip":"198.51.100.9"},"n":18446744073709551616}'
    assert protect_rejected_line(line, is_json=True) == (
        '{"ip_address":null,"ctx":{"ip":"198.51.100.0"},"n":18446744073709551616}'
    )
    assert protect_rejected_line('{"ip_address":3405803853}', is_json=True) == '{"ip_address":null}'


def test_a_rejected_line_that_is_not_json_has_every_address_spelling_truncated() -> None:
    line = '{"ip_address":"203\\u002e0.113.77", "x":"2001:db8:1:2::5", "y":"010.001.002.003"'
    treated = protect_rejected_line(line, is_json=False)
    assert treated == '{"ip_address":"203.0.113.0", "x":"2001:db8:1::", "y":"10.1.2.0"'


def test_scrub_keeps_what_is_not_an_address() -> None:
    text = "timestamp '2026-11-27T10:00:00Z' at 10:30:00, version 999.1.1.1, id 5d9dc9f8-1818"
    assert scrub_ips(text) == text
