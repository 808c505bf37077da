"""Differential tests: the vectorised fast path must give exactly what the per-line path gives.

For the same NDJSON both builders must produce the same COPY rows per source
line (compared as the values PostgreSQL stores: ``timestamp`` as an instant,
``ip_address`` as an address, every other column - ``raw_event_data``
included - as exact text), the same rejects (line, reason, original text) and
the same counters.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.demo_data import BAD_LINES, iter_events
from events_pipeline.attribution.domains import DomainMatcher, Owner
from events_pipeline.ingest.arrow_row_builder import FastRowBuilder
from events_pipeline.ingest.erased_visitors import ErasedVisitors
from events_pipeline.ingest.row_builder import COPY_COLUMNS, RejectSink, RowBuilder
from events_pipeline.ingest.validation import TimestampWindow
from events_pipeline.privacy.visitor_digest import visitor_digest
from tests.unit.ingest.copy_text import unescape_copy_field

DOMAINS = {
    "acme.com": Owner("acme", "standard"),
    "globex.de": Owner("globex", "gdpr"),
    "globex-shop.eu": Owner("globex", "gdpr"),
    "initech.io": Owner("initech", "standard"),
}


def _builder(
    cls: type[RowBuilder],
    skip: dict[int, str] | None = None,
    window: TimestampWindow | None = None,
    erased: ErasedVisitors | None = None,
) -> RowBuilder:
    return cls(
        DomainMatcher(DOMAINS),
        file_id=42,
        file_batch_id="file-batch",
        line_id_prefix="bucket/incoming/x.ndjson#etag",
        secret=lambda: "s3cret-s3cret-s3cret-s3cret-s3cret",
        rejects=RejectSink(),
        skip_lines=skip,
        window=window,
        erased=erased,
    )


def _stored(row: dict[str, str | None]) -> dict[str, Any]:
    """A row as PostgreSQL stores it (timestamptz and inet compare by value)."""
    out: dict[str, Any] = dict(row)
    out["timestamp"] = datetime.fromisoformat(row["timestamp"])  # type: ignore[arg-type]
    if row["ip_address"] is not None:
        out["ip_address"] = ipaddress.ip_address(row["ip_address"])
    return out


def _result(b: RowBuilder, data: bytes) -> dict[str, Any]:
    lines = data.decode().split("\n")
    assert lines[-1] == ""
    rows = {}
    for k, line in enumerate(lines[:-1], start=1):
        fields = line.split("\t")
        assert len(fields) == len(COPY_COLUMNS)
        source = b.copy_line_to_source[k]
        assert source not in rows
        rows[source] = _stored(dict(zip(COPY_COLUMNS, map(unescape_copy_field, fields), strict=True)))
    rejects = [orjson.loads(x) for x in b.rejects.stream().read().splitlines()]
    return {
        "rows": rows,
        "rejects": sorted(rejects, key=lambda r: r["line"]),
        "counters": (b.rows, b.rows_with_batch, b.blank, b.nul_lines, b.line_no),
        "per_client": b.per_client,
        "batch_ids": b.batch_ids,
        "erased": (sorted(b.erased_line_numbers), b.erased_per_request),
    }


def _compare(
    blocks: list[bytes],
    skip: dict[int, str] | None = None,
    window: TimestampWindow | None = None,
    erased: ErasedVisitors | None = None,
) -> FastRowBuilder:
    ref = _builder(RowBuilder, skip, window, erased)
    ref_data = b"".join(ref.ndjson_block(block.decode().split("\n")) for block in blocks)
    fast = _builder(FastRowBuilder, skip, window, erased)
    fast_data = b"".join(bytes(fast.ndjson_bytes_block(block)) for block in blocks)
    expected = _result(ref, ref_data)
    got = _result(fast, fast_data)
    assert got["counters"] == expected["counters"]
    assert got["rejects"] == expected["rejects"]
    assert got["per_client"] == expected["per_client"]
    assert got["batch_ids"] == expected["batch_ids"]
    assert got["erased"] == expected["erased"]
    assert got["rows"].keys() == expected["rows"].keys()
    for line, row in expected["rows"].items():
        assert got["rows"][line] == row, f"line {line}"
    return fast  # type: ignore[return-value]


def _lines(events: list[Any]) -> bytes:
    return b"\n".join(e if isinstance(e, bytes) else orjson.dumps(e) for e in events)


def test_demo_events_mostly_fast_and_identical() -> None:
    events = list(iter_events(3000))
    data = _lines(events)
    fast = _compare([data[: len(data) // 2].rsplit(b"\n", 1)[0], data[len(data) // 2 :].split(b"\n", 1)[1]])
    assert fast.fast_lines >= 0.95 * fast.line_no


BASE = {
    "event_id": "5d9dc9f8-1818-4811-892f-902bd23f0824",
    "event_type": "pageview",
    "timestamp": "2026-11-27T05:00:00.000Z",
    "site_id": "www.acme.com",
    "url": "https://www.acme.com/cart?x=1",
    "ip_address": "35.148.214.37",
}


def _ev(**changes: Any) -> dict[str, Any]:
    out = {**BASE, **changes}
    return {k: v for k, v in out.items() if v is not ...}


EDGE_EVENTS: list[Any] = [
    _ev(),
    _ev(event_id=...),  # generated id
    _ev(event_id="5D9DC9F8-1818-4811-892F-902BD23F0824"),
    _ev(event_id="5d9dc9f818184811892f902bd23f0824"),
    _ev(event_id="not-a-uuid"),
    _ev(event_type=""),
    _ev(event_type="x" * 50),
    _ev(event_type="x" * 51),
    _ev(event_type=7),
    _ev(timestamp=1764219600123),
    _ev(timestamp=1764219600123.5),
    _ev(timestamp="2026-11-27T05:00:00Z"),
    _ev(timestamp="2026-11-27T05:00:00.1234567Z"),
    _ev(timestamp="2026-11-27T05:00:00+14:59"),
    _ev(timestamp="2026-11-27T05:00:00+23:00"),
    _ev(timestamp="2026-11-27T05:00:00"),
    _ev(timestamp="2026-02-30T05:00:00Z"),
    _ev(timestamp="2024-02-29T05:00:00Z"),
    _ev(timestamp="2026-04-31T05:00:00Z"),
    _ev(timestamp="2026-13-01T05:00:00Z"),
    _ev(timestamp="2026-11-27 05:00:00Z"),
    _ev(timestamp="yesterday"),
    _ev(timestamp=...),
    _ev(site_id="Shop.ACME.com:8443."),
    _ev(site_id="shop.acme.com."),
    _ev(site_id="[2001:db8::1]:80"),
    _ev(site_id=""),
    _ev(site_id=...),
    _ev(site_id=..., url="https://Globex.DE:8080/p"),
    _ev(site_id="x" * 256),
    _ev(site_id="globex.de"),
    _ev(site_id="globex.de", ip_address=...),
    _ev(site_id="globex.de", ip_address="2001:db8:6dec:1332:2c01:de06:d61a:23c4"),
    _ev(site_id="globex.de", ip_address="::ffff:1.2.3.4"),
    _ev(site_id="globex.de", ip_address="1.2.3.0"),
    _ev(site_id="globex.de", ip_pseudonym="given"),
    _ev(site_id="shop.globex-shop.eu", properties={"price": 1.50, "big": 10**18, "e": 1e5}),
    _ev(ip_address="2001:DB8::1"),
    _ev(ip_address="2001:0db8:0000:0000:0000:0000:0000:0001"),
    _ev(ip_address="::1"),
    _ev(ip_address="fe80::1%eth0"),
    _ev(ip_address="01.2.3.4"),
    _ev(ip_address="999.1.1.1"),
    _ev(ip_address=""),
    _ev(ip_address=12),
    _ev(session_id="s" * 100, visitor_id="v" * 100),
    _ev(session_id="s" * 101),
    _ev(session_id=5),
    _ev(path="/given\tpath"),
    _ev(path="p" * 501),
    _ev(url=...),
    _ev(url=""),
    _ev(url="https://www.acme.com/" + "a" * 600),
    _ev(url="https://www.acme.com/caf\u00e9?q=1"),
    _ev(url="https://www.acme.com/a b"),
    _ev(url="https://www.acme.com#frag"),
    _ev(url="no-scheme/path"),
    _ev(url="HTTPS://www.acme.com/UP"),
    _ev(url="https://www.acme.com/a\u3000b"),
    _ev(batch_id="b-1"),
    _ev(batch_id="b" * 101),
    _ev(user_agent='tab\there, new\nline, cr\r, back\\slash, \\N, quote", 日本 🎉'),
    _ev(event_type="\\N"),
    _ev(event_type="a\u0000b"),
    _ev(properties={"k\u0000": "v"}),
    _ev(properties={"deep": [[[1]]], "nan": "NaN", "inf": "Infinity"}),
    _ev(properties={"n": 1.5e300}),
    _ev(extra=[1, 2, 3], nested={"a": {"b": None}}),
    {"event_type": "pv", "timestamp": "2026-11-27T05:00:00Z"},
    [1, 2],
    "string",
    None,
    *[line.encode() for line in BAD_LINES],
    b"",
    b"   ",
    b"\r",
    b"{}",
    b'{"event_type":"pv","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com"}\r',
    b'{"event_type":"pv","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com","x":NaN}',
    b'{"event_type":"pv","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com","x":1.7976931348623157e309}',
    b'{"event_type":"pv","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com"}{"event_type":"pv"}',
    b'{"event_type":"pv","event_type":"click","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com"}',
    b'{"event_type":"pv","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com","x":"\\ud800"}',
    b'{"event_type":"pv",\t"timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com"}',
    b'{"event\\u005ftype":"pv","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com","u":"\\u00e9\\/"}',
    b'{"event_type":"pv","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com","x":'
    + b"[" * 1100
    + b"]" * 1100
    + b"}",
    b'{"event_type":"pv","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com","x":'
    + b"[" * 600
    + b"]" * 600
    + b"}",
    b'{"event_type":"pv","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com","x":"a\\u0000"}',
    b"\xef\xbb\xbf" + orjson.dumps(BASE),
    # GDPR text edit (gdpr_ingest.protect_text): spellings the fast path edits, and the
    # ones it leaves to the per-line path (spaced member, key twice, escaped key, backslash)
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip_address" : "1.2.3.4"}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z",\t"ip_address":"1.2.3.4"}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip_address":"1.2.3.4",'
    b'"p":{"ip_address":"1.2.3.4"}}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","note":"ip_address",'
    b'"ip_address":"1.2.3.4"}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip\\u005faddress":"1.2.3.4",'
    b'"p":{"ip_address":"1.2.3.4"}}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip_address":"1.2.3.4",'
    b'"q":"a\\"b"}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip_address":"1.2.3.4",'
    b'"n":1.50,"e":1E5,"u":"\xc3\xa9"}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z",'
    b'"ip_address":"2001:0db8:85a3:0000:0000:8a2e:0370:7334"}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip_address":"0.0.0.0"}',
    # every IP of a GDPR event is treated (contract §6.3): nested, repeated, in arrays, escaped,
    # IPv6 and embedded forms - the fast path leaves such lines to the per-line path
    _ev(site_id="globex.de", context={"ip": "35.148.214.37"}),
    _ev(site_id="globex.de", ip_address=..., context={"ips": ["203.0.113.9", "2001:db8::1"]}),
    _ev(site_id="globex.de", ip_address=..., context={"note": "no address here", "v": "1.2.3"}),
    _ev(site_id="globex.de", extra=["::ffff:203.0.113.77", "2002:cb00:714d::1", "64:ff9b::cb00:714d"]),
    _ev(site_id="acme.com", context={"ip": "35.148.214.37"}),  # a standard client: kept
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip_address":"203.0.113.78",'
    b'"c":{"ip":"203\\u002e0.113.78"}}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z",'
    b'"c":{"ip":"\\u0032\\u0030\\u0033.0.113.78"}}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip_address":"1.2.3.4",'
    b'"url2":"http://203.0.113.7/x","k":{"1.2.3.4":true}}',
    # numbers exactly as sent (contract §2.4), standard and GDPR, fast and per-line
    b'{"site_id":"acme.com","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","n":18446744073709551616,'
    b'"f":1.0000000000000000001,"neg":-9223372036854775809,"z":-0.0,"e":1E+2}',
    b'{"site_id":"acme.com","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","n":-1e400,"m":1e-400}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip_address":"1.2.3.4",'
    b'"n":18446744073709551616,"f":1.0000000000000000001,"big":123456789012345678901234567890}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip_address":"1.2.3.4",'
    b'"c":{"ip":"1.2.3.4"},"n":18446744073709551616,"x":-1e400}',
    b'{"site_id":"globex.de","event_type":"pv","timestamp":"2026-11-27T05:00:00Z","ip_address":"1.2.3.4",'
    b'"s":"a\\u0000b","n":18446744073709551616}',
    b'{"site_id":"acme.com","event_type":"pv","timestamp":-1e400}',
]


def test_edge_cases_identical() -> None:
    _compare([_lines(EDGE_EVENTS)])


def test_edge_cases_mixed_into_good_blocks() -> None:
    good = list(iter_events(40))
    for edge in EDGE_EVENTS:
        _compare([_lines([*good[:20], edge, *good[20:]])])


def test_skip_lines_and_several_blocks() -> None:
    events = list(iter_events(200))
    blocks = [_lines(events[:100]), _lines([*events[100:150], b"", *EDGE_EVENTS[:10], *events[150:]])]
    _compare(blocks, skip={5: "refused by PostgreSQL: x", 150: "refused by PostgreSQL: y"})


_text = st.text(
    alphabet=st.sampled_from(list("aZ09 .-_/\\\t\n\r\"'{}[]:,N\u00e9\u65e5\U0001f389\u0000\u2028")),
    max_size=30,
)
_site = st.sampled_from(
    ["acme.com", "www.acme.com", "globex.de", "Shop.Globex.DE:80.", "unknown.org", "", "a..b"]
)
_ip = st.one_of(
    st.none(),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda a: ":".join(f"{x:x}" for x in a.packed[::2])),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
)
_event = st.fixed_dictionaries(
    {
        "event_type": st.one_of(_text, st.just("pageview")),
        "timestamp": st.one_of(
            st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)).map(
                lambda d: d.isoformat(timespec="milliseconds") + "Z"
            ),
            st.integers(min_value=0, max_value=4_000_000_000_000),
            _text,
        ),
        "site_id": _site,
    },
    optional={
        "event_id": st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), _text),
        "session_id": _text,
        "url": st.one_of(_text.map(lambda t: "https://acme.com/" + t), _text),
        "path": _text,
        "user_agent": _text,
        "ip_address": _ip,
        "batch_id": _text,
        "properties": st.dictionaries(
            _text, st.one_of(_text, st.integers(-(2**62), 2**62), st.floats(allow_nan=False))
        ),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, min_size=1, max_size=40))
def test_generated_events_identical(events: list[dict[str, Any]]) -> None:
    _compare([_lines(events)])


#: Tombstones of the differential tests: acme erased "v-gone" through ERASED_THROUGH (request 7),
#: globex (GDPR) erased it too (request 8); initech erased nobody.
ERASED_THROUGH = datetime.fromisoformat("2026-11-27T05:30:00+00:00")
_ERASED = ErasedVisitors(
    [
        ("acme", visitor_digest("acme", "v-gone"), ERASED_THROUGH, 7),
        ("globex", visitor_digest("globex", "v-gone"), ERASED_THROUGH, 8),
        ("acme", visitor_digest("acme", "v-other-gone"), ERASED_THROUGH, 9),
    ]
)


def test_erased_visitors_dropped_alike_on_both_paths() -> None:
    good = list(iter_events(60))
    before, after = "2026-11-27T05:00:00.000Z", "2026-11-27T06:00:00.000Z"
    special = [
        _ev(visitor_id="v-gone", timestamp=before),  # acme, before: dropped (request 7)
        _ev(visitor_id="v-gone", timestamp=after),  # acme, came back: loaded
        _ev(visitor_id="v-gone", timestamp="2026-11-27T05:30:00Z"),  # exactly erased_through: dropped
        _ev(visitor_id="v-gone", site_id="globex.de", url="https://globex.de/", timestamp=before),  # 8
        _ev(visitor_id="v-gone", site_id="initech.io", url="https://initech.io/"),  # no tombstone: kept
        _ev(visitor_id="v-gone", site_id="unknown.org", url="https://unknown.org/"),  # unattributed: kept
        _ev(visitor_id="v-other-gone", timestamp=1764220000000),  # epoch ms before: dropped (9)
        _ev(visitor_id="v-gone", event_type=""),  # rejected line of the erased visitor: dropped
        _ev(visitor_id="v-gone", timestamp="yesterday"),  # unreadable timestamp: dropped
        _ev(visitor_id="v-gone", timestamp=after, event_type=""),  # came back, bad line: rejected
        _ev(visitor_id="v-gonE", timestamp=before),  # another visitor: kept
    ]
    fast = _compare([_lines([*good[:30], *special, *good[30:]])], erased=_ERASED)
    assert fast.erased_per_request == {7: 4, 8: 1, 9: 1}
    assert sorted(fast.erased_line_numbers) == [31, 33, 34, 37, 38, 39]
    assert fast.rejects.count == 1
    assert fast.fast_lines >= 60


def test_no_tombstone_of_the_files_clients_changes_nothing() -> None:
    events = list(iter_events(300))
    for event in events[::5]:
        event["visitor_id"] = "v-gone"
    fast = _compare([_lines(events)], erased=ErasedVisitors())
    assert fast.erased == 0
    assert fast.slow_lines <= 15


_erased_event = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from(["pageview", ""]),
        "timestamp": st.sampled_from(
            [
                "2026-11-27T05:00:00Z",
                "2026-11-27T05:30:00.000+00:00",
                "2026-11-27T06:30:00Z",
                1764220000000,
                "x",
            ]
        ),
        "site_id": st.sampled_from(
            ["acme.com", "www.acme.com", "globex.de", "initech.io", "unknown.org", ""]
        ),
        "visitor_id": st.sampled_from(["v-gone", "v-other-gone", "v-kept", "v-GONE"]),
    },
    optional={"ip_address": _ip, "url": st.just("https://acme.com/x")},
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_erased_event, min_size=1, max_size=40))
def test_generated_events_with_tombstones_identical(events: list[dict[str, Any]]) -> None:
    _compare([_lines(events)], erased=_ERASED)


def test_many_lines_arrow_refuses_switch_to_the_per_line_path() -> None:
    events = [orjson.dumps(e) for e in iter_events(600)]
    bad = b'{"event_type":"pv","timestamp":"2026-11-27T05:00:00Z","site_id":"acme.com",}'
    lines = [bad if i % 7 == 0 else line for i, line in enumerate(events)]
    blocks = [_lines(lines[:300]), _lines(lines[300:])]
    fast = _compare(blocks)
    assert fast.arrow_off
    assert fast.rejects.count == len([x for x in lines if x == bad])


def test_epoch_millisecond_lines_do_not_stop_the_fast_path() -> None:
    events = list(iter_events(400))
    for event in events[::10]:
        event["timestamp"] = 1764219600123
    fast = _compare([_lines(events)])
    assert not fast.arrow_off
    assert fast.fast_lines >= 300
