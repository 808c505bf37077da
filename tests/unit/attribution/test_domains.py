"""site_id normalisation and domain matching (exact, else nearest parent)."""

from __future__ import annotations

import pytest

from events_pipeline.attribution.domains import (
    UNATTRIBUTED,
    DomainMatcher,
    Owner,
    host_from_url,
    normalize_site,
)


@pytest.mark.parametrize(
    ("site", "expected"),
    [
        ("acme.com", "acme.com"),
        ("WWW.ACME.COM", "www.acme.com"),
        ("acme.com:8080", "acme.com"),
        ("acme.com.", "acme.com"),
        ("Shop.Acme.Com.:443", "shop.acme.com"),
        ("  acme.com  ", "acme.com"),
        ("https://acme.com/path", "acme.com"),
        ("user@acme.com", "acme.com"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("", None),
        (".", None),
    ],
)
def test_normalize_site(site: str, expected: str | None) -> None:
    assert normalize_site(site) == expected


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Shop.Acme.com:8080/cart", "shop.acme.com"),
        ("http://acme.com./", "acme.com"),
        ("/relative/path", None),
        ("not a url", None),
        ("http://[::1", None),
    ],
)
def test_host_from_url(url: str, host: str | None) -> None:
    assert host_from_url(url) == host


ACME = Owner("acme", "standard")
BLOG = Owner("blogco", "standard")
GLOBEX = Owner("globex", "gdpr")
MATCHER_DOMAINS = {"acme.com": ACME, "blog.acme.com": BLOG, "globex.de": GLOBEX}


@pytest.mark.parametrize(
    ("site", "owner"),
    [
        ("acme.com", ACME),
        ("www.acme.com", ACME),
        ("a.b.c.acme.com", ACME),
        ("blog.acme.com", BLOG),
        ("x.blog.acme.com", BLOG),
        ("notacme.com", UNATTRIBUTED),
        ("acme.com.evil.org", UNATTRIBUTED),
        ("com", UNATTRIBUTED),
        ("globex.de", GLOBEX),
        (None, UNATTRIBUTED),
    ],
)
def test_domain_matcher(site: str | None, owner: Owner) -> None:
    matcher = DomainMatcher(MATCHER_DOMAINS)
    assert matcher.match(site) == owner
    assert matcher.match(site) == owner  # from the cache


def test_unattributed_owner_is_standard_with_empty_client() -> None:
    assert Owner("", "standard") == UNATTRIBUTED
