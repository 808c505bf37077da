"""What both row builders store and reject: IPs out of rejected lines (contract §2.5), every IP of
a GDPR event treated (§6.3), numbers exactly as sent (§2.4), the plausible timestamp window (§2.4).

Each case goes through the per-line ``RowBuilder`` and the vectorised ``FastRowBuilder``
(``_compare`` asserts they give the same rows and rejects) and checks the result itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from events_pipeline.ingest.arrow_row_builder import FastRowBuilder
from events_pipeline.ingest.row_builder import RowBuilder
from events_pipeline.ingest.validation import TimestampWindow
from tests.unit.ingest.test_arrow_row_builder import _builder, _compare, _lines, _result

T = "2026-11-27T05:00:00Z"
#: Lines the fast path may take carry a canonical event_id (without one, the id is derived per line).
ID = '"event_id":"5d9dc9f8-1818-4811-892f-902bd23f0824",'
WINDOW = TimestampWindow(datetime(2000, 1, 1, tzinfo=UTC), datetime(2026, 11, 28, 5, tzinfo=UTC))


def _both(events: list[Any], window: TimestampWindow | None = None) -> dict[str, Any]:
    """Feed ``events`` to both builders (asserting they agree); return the reference's result."""
    data = _lines(events)
    fast = _compare([data], window=window)
    reference = _builder(RowBuilder, None, window)
    result = _result(reference, reference.ndjson_block(data.decode().split("\n")))
    result["fast"] = fast
    return result


# ----------------------------------------------------------------------------- item 1: rejected lines


def test_a_gdpr_clients_rejected_line_has_its_ips_treated_and_the_reason_quotes_none() -> None:
    line = (
        '{"site_id":"globex.de","event_type":"pv","timestamp":"yesterday","ip_address":"203.0.113.78",'
        '"context":{"ip":"203.0.113.78","ips":["2001:db8:1:2::5"]},"n":18446744073709551616}'
    )
    bad_ip = '{"site_id":"globex.de","event_type":"pv","timestamp":"' + T + '","ip_address":"203.0.113.078"}'
    result = _both([line.encode(), bad_ip.encode()])
    first, second = result["rejects"]
    assert first["raw"] == (
        '{"site_id":"globex.de","event_type":"pv","timestamp":"yesterday","ip_address":"203.0.113.0",'
        '"context":{"ip":"203.0.113.0","ips":["2001:db8:1::"]},"n":18446744073709551616}'
    )
    assert "timestamp 'yesterday'" in first["reason"]
    # an address the strict rule refuses is still an address: removed, and never quoted
    assert second["raw"] == bad_ip.replace('"203.0.113.078"', "null")
    assert "ip_address" in second["reason"] and "203.0.113" not in second["reason"]


@pytest.mark.parametrize(
    ("line", "treated"),
    [
        # no site at all
        (
            '{"event_type":"","timestamp":"' + T + '","ip_address":"198.51.100.7"}',
            '{"event_type":"","timestamp":"' + T + '","ip_address":"198.51.100.0"}',
        ),
        # a site of no client (it may be a GDPR client's not mapped yet)
        (
            '{"site_id":"unknown.example","event_type":"","timestamp":5,"c":{"ip":"198.51.100.7"}}',
            '{"site_id":"unknown.example","event_type":"","timestamp":5,"c":{"ip":"198.51.100.0"}}',
        ),
        # not JSON: every spelling of an address in the text, escaped ones too
        (
            '{"site_id":"globex.de","ip_address":"198\\u002e51.100.7",',
            '{"site_id":"globex.de","ip_address":"198.51.100.0",',
        ),
        ("ip=2001:db8:1:2::5 from 010.001.002.003", "ip=2001:db8:1:: from 10.1.2.0"),
    ],
)
def test_a_rejected_line_of_an_unknown_site_is_treated_too(line: str, treated: str) -> None:
    (reject,) = _both([line.encode()])["rejects"]
    assert reject["raw"] == treated


def test_a_standard_clients_rejected_line_stays_byte_for_byte() -> None:
    line = (
        '{"site_id":"acme.com","event_type":"","timestamp":"' + T + '","ip_address":"198.51.100.7",'
        '"c":{"ip":"198\\u002e51.100.7"},"n":1.0000000000000000001}'
    )
    (reject,) = _both([line.encode()])["rejects"]
    assert reject["raw"] == line


# ----------------------------------------------------------------------------- item 2: nested IPs


@pytest.mark.parametrize(
    "line",
    [
        '{"site_id":"globex.de","event_type":"pv","timestamp":"' + T + '","ip_address":"203.0.113.78",'
        '"context":{"ip":"203.0.113.78"}}',
        '{"site_id":"globex.de","event_type":"pv","timestamp":"' + T + '","context":{"ip":"203.0.113.78"}}',
        '{"site_id":"globex.de","event_type":"pv","timestamp":"' + T + '","a":[["203\\u002e0.113.78"]]}',
        '{"site_id":"globex.de","event_type":"pv","timestamp":"'
        + T
        + '","a":"\\u0032\\u0030\\u0033.0.113.78"}',
        '{"site_id":"globex.de","event_type":"pv","timestamp":"' + T + '","ip_address":"2001:db8:1:2::5",'
        '"v6":["2001:0db8:0001:0002:0000:0000:0000:0005","::ffff:203.0.113.78","2002:cb00:714e::"]}',
    ],
)
def test_no_ip_of_a_gdpr_event_is_stored_on_either_path(line: str) -> None:
    result = _both([line.encode()] * 3)  # three times: a block the fast path would take whole
    for row in result["rows"].values():
        raw = row["raw_event_data"]
        for leaked in ("203.0.113.78", "u002e0", "u0032", "2001:db8:1:2::5", "0002:0000", "cb00:714e"):
            assert leaked not in raw
        assert row["privacy_level"] == "gdpr"
    assert result["fast"].slow_lines == 3  # left to the per-line path, which treats them


def test_the_fast_path_still_takes_gdpr_lines_whose_only_ip_is_the_top_level_one() -> None:
    line = (
        "{"
        + ID
        + '"site_id":"globex.de","event_type":"pv","timestamp":"'
        + T
        + '","ip_address":"203.0.113.78"}'
    )
    result = _both([line.encode()] * 5)
    assert result["fast"].fast_lines == 5
    assert all("203.0.113.0" in row["raw_event_data"] for row in result["rows"].values())


# ----------------------------------------------------------------------------- item 7: exact numbers

NUMBERS = '"n":18446744073709551616,"f":1.0000000000000000001,"neg":-9223372036854775809,"e":-1e400,"z":-0.0'


@pytest.mark.parametrize(
    ("line", "path"),
    [
        (
            "{" + ID + '"site_id":"acme.com","event_type":"pv","timestamp":"' + T + '",' + NUMBERS + "}",
            "per-line",
        ),
        (
            "{"
            + ID
            + '"site_id":"acme.com","event_type":"pv","timestamp":"'
            + T
            + '","n":18446744073709551616}',
            "fast",
        ),
        (
            "{"
            + ID
            + '"site_id":"globex.de","event_type":"pv","timestamp":"'
            + T
            + '","ip_address":"1.2.3.4",'
            '"big":18446744073709551616,"f":1.0000000000000000001}',
            "fast",
        ),
        (
            "{"
            + ID
            + '"site_id":"globex.de","event_type":"pv","timestamp":"'
            + T
            + '","ip_address":"1.2.3.4",'
            '"c":{"ip":"1.2.3.4"},' + NUMBERS + "}",
            "per-line",
        ),
        (
            "{"
            + ID
            + '"site_id":"globex.de","event_type":"pv","timestamp":"'
            + T
            + '","ip_address":"1.2.3.4",'
            '"s":"a\\u0000b",' + NUMBERS + "}",
            "per-line",
        ),
    ],
)
def test_numbers_are_stored_exactly_as_sent(line: str, path: str) -> None:
    result = _both([line.encode()])
    (row,) = result["rows"].values()
    raw = row["raw_event_data"]
    for number in ("18446744073709551616", "1.0000000000000000001", "-9223372036854775809", "-1e400", "-0.0"):
        if number in line:
            assert number in raw, (number, raw)
    assert (result["fast"].fast_lines, result["fast"].slow_lines) == ((1, 0) if path == "fast" else (0, 1))
    if "a\\u0000b" in line:
        assert '"s":"a\\ufffdb"' in raw  # the NUL replaced in the text, nothing re-serialised


def test_a_huge_number_in_a_contract_field_is_refused_not_a_json_error() -> None:
    (reject,) = _both([b'{"site_id":"acme.com","event_type":"pv","timestamp":-1e400}'])["rejects"]
    assert "timestamp" in reject["reason"] and "out of range" in reject["reason"]


# ----------------------------------------------------------------------------- item 8: timestamp window


@pytest.mark.parametrize(
    ("timestamp", "ok"),
    [
        ('"2000-01-01T00:00:00Z"', True),
        ('"1999-12-31T23:59:59.999999Z"', False),
        ('"2000-01-01T00:30:00+01:00"', False),  # 1999-12-31T23:30Z
        ('"2026-11-28T05:00:00Z"', True),
        ('"2026-11-28T05:00:00.000001Z"', False),
        ('"2026-11-28T06:00:00+01:00"', True),
        ('"2099-01-01T00:00:00Z"', False),
        ("946684799999", False),  # epoch ms, 1999-12-31T23:59:59.999Z
        ("946684800000", True),
    ],
)
def test_timestamps_outside_the_window_are_rejected_naming_field_and_window(timestamp: str, ok: bool) -> None:
    line = '{"site_id":"acme.com","event_type":"pv","timestamp":' + timestamp + "}"
    result = _both([line.encode()] * 2, window=WINDOW)
    if ok:
        assert len(result["rows"]) == 2 and not result["rejects"]
        return
    assert not result["rows"]
    reason = result["rejects"][0]["reason"]
    assert reason.startswith("timestamp ")
    assert "outside the accepted window 2000-01-01T00:00:00Z .. 2026-11-28T05:00:00Z" in reason
    assert "events_ingest_timestamp_min" in reason and "events_ingest_timestamp_max_ahead_hours" in reason


def test_the_window_keeps_the_fast_path_for_ordinary_lines() -> None:
    line = "{" + ID + '"site_id":"acme.com","event_type":"pv","timestamp":"2026-11-27T05:00:00+14:00"}'
    result = _both([line.encode()] * 10, window=WINDOW)
    assert result["fast"].fast_lines == 10 and len(result["rows"]) == 10


def test_builders_accept_no_window() -> None:
    line = orjson.dumps({"event_type": "pv", "timestamp": "1900-01-01T00:00:00Z"})
    result = _both([line])
    assert len(result["rows"]) == 1
    assert isinstance(result["fast"], FastRowBuilder)
