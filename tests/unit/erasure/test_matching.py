"""Which request a raw landing event belongs to: visitor id plus the client's sites (attribution rule)."""

from __future__ import annotations

import pytest

from events_pipeline.attribution.domains import Owner
from events_pipeline.erasure.matching import EventMatcher, Wanted, event_fields

DOMAINS = {"acme.com": Owner("acme", "standard"), "globex.com": Owner("globex", "gdpr")}
MATCHER = EventMatcher(
    [Wanted(1, "acme", "bob"), Wanted(2, "globex", "bob"), Wanted(3, "acme", "amy")], DOMAINS
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"visitor_id":"bob","site_id":"shop.acme.com"}', [1]),  # nearest listed parent
        ('{"visitor_id":"bob","site_id":"ACME.com:443."}', [1]),  # normalised as at ingest
        ('{"visitor_id":"bob","url":"https://www.globex.com/x"}', [2]),  # the host of url
        ('{"visitor_id":"bob"}', [1, 2]),  # no site: nobody else's
        ('{"visitor_id":"bob","site_id":"notacme.com"}', []),  # a site no client lists: not this client's
        ('{"visitor_id":"bob","site_id":"other.example"}', []),
        ('{"visitor_id":"amy","site_id":"www.globex.com"}', []),  # another client's site
        ('{"visitor_id":"carl","site_id":"acme.com"}', []),
        ('{"visitor_id":"bob","site_id":"www.acme.com", "timestamp": "bad"', [1]),  # not JSON: read leniently
        ('["visitor_id", "bob"]', []),
    ],
)
def test_requests_of_an_event(line, expected):
    assert MATCHER.requests_of(event_fields(line)) == expected


def test_event_fields_reads_json_and_escapes():
    assert event_fields(b'{"visitor_id":"b\\u00f6b","url":"https://a.acme.com/"}') == {
        "visitor_id": "böb",
        "site_id": None,
        "url": "https://a.acme.com/",
    }
    assert event_fields('{"visitor_id" : "x\\"y", broken')["visitor_id"] == 'x"y'
    assert event_fields(b"\xff\xfe not utf-8") == {}


def test_may_hold_sees_raw_and_json_escaped_ids():
    matcher = EventMatcher([Wanted(1, "acme", "jürgen")], DOMAINS)
    assert matcher.may_hold('{"visitor_id":"jürgen"}'.encode())
    assert matcher.may_hold(b'{"visitor_id":"j\\u00fcrgen"}')
    assert not matcher.may_hold(b'{"visitor_id":"jurgen"}')
