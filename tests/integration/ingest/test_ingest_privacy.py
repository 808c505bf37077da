"""Through the real DAG: no raw IP of a GDPR event anywhere in the store or in rejected/
(contract §2.5, §6.3), and every number of raw_event_data stored exactly as sent (§2.4)."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

from tests.conftest import task_states
from tests.integration.ingest.conftest import events, keys, put, read_ndjson, registry

T = "2026-11-27T10:00:00Z"
ID = '"event_id":"6f1c3c2e-8a53-4c1b-9a35-2f4f3a1f0b7{}",'


def _line(n: int, site: str, body: str, *, with_id: bool = True) -> str:
    """One event line: ``n`` numbers it (``"n":n``), ``body`` is the rest of its members."""
    head = "{" + (ID.format(n % 10) if with_id else "")
    return head + f'"site_id":"{site}","event_type":"pv","timestamp":"{T}","n":{n},' + body + "}"


def _stored_text(db: Any) -> dict[int, str]:
    rows = db.execute("SELECT (raw_event_data->>'n')::int, raw_event_data::text FROM events_log").fetchall()
    return dict(rows)


def test_no_raw_ip_of_a_gdpr_event_is_stored_wherever_it_is(ingest_env: Any, db: Any, run_dag: Any) -> None:
    lines = [
        _line(1, "globex.de", '"ip_address":"203.0.113.78","context":{"ip":"203.0.113.78"}'),
        _line(2, "globex.de", '"context":{"ips":["198.51.100.7",["2001:db8:1:2::5"]]}'),
        _line(3, "globex.de", '"ip_address":"203.0.113.78","c":{"ip":"203\\u002e0.113.78"}'),
        _line(4, "globex.de", '"c":{"ip":"\\u0032\\u0030\\u0033.0.113.78"}', with_id=False),
        _line(5, "globex.de", '"v":["::ffff:203.0.113.78","2002:cb00:714e::1","64:ff9b::cb00:714e"]'),
        _line(6, "globex.de", '"ip_address":"203.0.113.78","url2":"http://203.0.113.78/x"'),
        _line(7, "acme.com", '"ip_address":"203.0.113.78","context":{"ip":"203.0.113.78"}'),
        # a GDPR event whose only IP is the top-level one: the fast path's edit
        *[_line(10 + i, "globex.de", '"ip_address":"203.0.113.78"') for i in range(20)],
    ]
    put(ingest_env, "privacy/nested.ndjson", "\n".join(lines).encode() + b"\n")
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    stored = _stored_text(db)
    assert len(stored) == len(lines)
    for n, text in stored.items():
        if n == 7:  # a standard client's event is stored as sent
            assert text == lines[6]
            continue
        checked = text.replace("http://203.0.113.78/x", "") if n == 6 else text
        for leaked in ("203.0.113.78", "u002e0", "u0032", "198.51.100.7", "2001:db8:1:2::5", "cb00:714e"):
            assert leaked not in checked, (n, text)
    # an address inside other text is kept (contract §6.3): only whole strings are addresses
    assert '"url2":"http://203.0.113.78/x"' in stored[6]
    assert db.execute(
        "SELECT count(*) FROM events_log WHERE client_id = 'globex' AND privacy_level = 'gdpr'"
    ).fetchone() == (len(lines) - 1,)


def test_rejected_lines_keep_no_ip_unless_they_are_a_standard_clients(
    ingest_env: Any, db: Any, run_dag: Any
) -> None:
    gdpr = _line(1, "globex.de", '"ip_address":"203.0.113.78","c":{"ip":"203.0.113.78"}').replace(T, "soon")
    unknown = _line(2, "nobody.example", '"c":{"ip":"198.51.100.7"}').replace('"pv"', '""')
    no_site = '{"event_type":"pv","timestamp":"' + T + '","ip_address":"198.51.100.077"}'
    broken = '{"site_id":"globex.de","ip_address":"203.0.113.78",'
    standard = _line(5, "acme.com", '"ip_address":"198.51.100.7"').replace(T, "soon")
    put(ingest_env, "privacy/rejects.ndjson", "\n".join([gdpr, unknown, no_site, broken, standard]).encode())
    assert run_dag("events_ingest").state == "success"
    (row,) = registry(db)
    rejected = {r["line"]: r for r in read_ndjson(ingest_env, row["rejected_key"])}
    assert sorted(rejected) == [1, 2, 3, 4, 5]
    assert rejected[1]["raw"] == gdpr.replace("203.0.113.78", "203.0.113.0")
    assert rejected[2]["raw"] == unknown.replace("198.51.100.7", "198.51.100.0")
    assert rejected[3]["raw"] == no_site.replace('"198.51.100.077"', "null")
    assert rejected[4]["raw"] == broken.replace("203.0.113.78", "203.0.113.0")
    assert rejected[5]["raw"] == standard  # byte for byte
    for record in rejected.values():
        assert "198.51.100.0" not in record["reason"] and "203.0.113" not in record["reason"]
        assert "198.51.100.07" not in record["reason"]


NUMBERS = (
    '"big":18446744073709551616,"f":1.0000000000000000001,"neg":-9223372036854775809,"e":-1e400,"z":-0.0'
)


def test_numbers_are_stored_exactly_as_sent_on_every_path(ingest_env: Any, db: Any, run_dag: Any) -> None:
    lines = [
        _line(1, "acme.com", NUMBERS),  # standard, per-line (a 3-digit exponent)
        _line(2, "acme.com", '"big":18446744073709551616,"f":1.0000000000000000001'),  # standard, fast
        _line(3, "globex.de", '"ip_address":"1.2.3.4","big":18446744073709551616,"f":1.0000000000000000001'),
        _line(4, "globex.de", '"ip_address":"1.2.3.4","c":{"ip":"1.2.3.4"},' + NUMBERS),  # GDPR, per line
        _line(5, "globex.de", '"ip_address":"1.2.3.4","s":"a\\u0000b",' + NUMBERS),  # GDPR with a NUL
    ]
    put(ingest_env, "numbers/a.ndjson", "\n".join(lines).encode())
    assert run_dag("events_ingest").state == "success"
    stored = _stored_text(db)
    assert sorted(stored) == [1, 2, 3, 4, 5]
    assert stored[1] == lines[0] and stored[2] == lines[1]
    for n in (3, 4, 5):
        for number in ("18446744073709551616", "1.0000000000000000001"):
            assert f":{number}" in stored[n], stored[n]
    for n in (4, 5):
        assert '"neg":-9223372036854775809,"e":-1e400,"z":-0.0' in stored[n]


def test_parquet_decimals_are_stored_with_all_their_digits(ingest_env: Any, db: Any, run_dag: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "event_type": ["pv"],
            "timestamp": [T],
            "site_id": ["globex.de"],
            "ip_address": ["203.0.113.78"],
            "amount": pa.array([Decimal("1.0000000000000000001")], pa.decimal128(38, 19)),
            "count": pa.array([2**63 - 1], pa.int64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    put(ingest_env, "numbers/a.parquet", buf.getvalue())
    assert run_dag("events_ingest").state == "success"
    (row,) = events(db)
    text = db.execute("SELECT raw_event_data::text FROM events_log").fetchone()[0]
    assert '"amount":1.0000000000000000001' in text and '"count":9223372036854775807' in text
    assert row["ip"] == "203.0.113.0" and "203.0.113.78" not in text
    assert keys(ingest_env, "rejected/") == []
