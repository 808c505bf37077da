"""``gdpr_ingest.IpProtector`` writes IPv6 text exactly as ``ipaddress`` does (the reference)."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from events_pipeline.gdpr_ingest import IpProtector
from events_pipeline.privacy import ip_pseudonym, truncate_ip

SECRET = "unit-test-secret"
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


@given(ip=st.ip_addresses(v=4).map(str))
def test_canonical_ipv4_shortcut_equals_treat(ip: str) -> None:
    protector = IpProtector(SECRET)
    assert protector.treat_v4(ip) == protector.treat(ip)
    assert protector.treat_v4(ip)[:2] == (truncate_ip(ip), ip_pseudonym(ip, SECRET))
