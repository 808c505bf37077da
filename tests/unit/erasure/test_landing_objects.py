"""Landing objects rewritten without a visitor's lines, in their own format (pure: bytes in, bytes out)."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from events_pipeline.attribution.domains import Owner
from events_pipeline.erasure.landing_objects import purge_bytes
from events_pipeline.erasure.matching import EventMatcher, Wanted

MATCHER = EventMatcher([Wanted(7, "acme", "bob")], {"acme.com": Owner("acme", "standard")})
BOB = b'{"visitor_id":"bob","site_id":"www.acme.com","n":1}\n'
BOB_ELSEWHERE = b'{"visitor_id":"bob","site_id":"www.other.example"}\n'
AMY = b'{"visitor_id":"amy", "site_id":"www.acme.com",  "n": 1.50}\r\n'


def test_ndjson_keeps_every_other_line_byte_for_byte():
    new, out = purge_bytes("processed/a/x.f1.ndjson", AMY + BOB + b"\n" + BOB_ELSEWHERE + BOB, MATCHER)
    assert new == AMY + b"\n" + BOB_ELSEWHERE
    assert (out.action, dict(out.removed), out.lines_left) == ("rewritten", {7: 2}, 2)
    assert out.bytes_after == len(new)


def test_an_object_with_nothing_else_left_is_removed():
    new, out = purge_bytes("processed/a/x.f1.jsonl", BOB + b"\n\n" + BOB, MATCHER)
    assert new is None and out.action == "removed" and out.removed[7] == 2


def test_an_object_without_the_visitor_is_left_alone():
    new, out = purge_bytes("processed/a/x.f1.ndjson", AMY + BOB_ELSEWHERE, MATCHER)
    assert new is None and out.action is None


def test_gzip_several_members_are_read_and_written_back_gzip():
    data = gzip.compress(AMY + BOB) + gzip.compress(BOB + AMY)
    new, out = purge_bytes("processed/a/x.f1.NDJSON.GZ", data, MATCHER)
    assert gzip.decompress(new) == AMY + AMY and out.removed[7] == 2


def test_rejected_records_are_matched_on_their_raw_line():
    records = [
        {"line": 3, "reason": "no offset", "raw": BOB.decode().strip()},
        {"line": 4, "reason": "not JSON", "raw": '{"visitor_id":"bob","site_id":"acme.com",'},
        {"line": 5, "reason": "no offset", "raw": AMY.decode().strip()},
    ]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    new, out = purge_bytes("rejected/a/x.f1.ndjson.rejected.ndjson", data, MATCHER)
    assert [json.loads(x)["line"] for x in new.splitlines()] == [5]
    assert out.removed[7] == 2


def test_parquet_rows_are_filtered_with_the_schema_kept():
    table = pa.table(
        {
            "visitor_id": ["bob", "amy", "bob", None],
            "site_id": ["www.acme.com", "acme.com", "other.example", None],
            "n": [1, 2, 3, 4],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    new, out = purge_bytes("processed/a/x.f1.parquet", buf.getvalue(), MATCHER)
    kept = pq.read_table(io.BytesIO(new))
    assert kept.schema.equals(table.schema, check_metadata=False)
    assert kept.column("n").to_pylist() == [2, 3, 4] and out.removed[7] == 1 and out.lines_left == 3


def test_an_unreadable_quarantined_file_holding_the_id_is_removed_whole():
    cut = gzip.compress(AMY + BOB + AMY * 50)[:-20]
    new, out = purge_bytes("quarantine/a/x.ndjson.gz", cut, MATCHER)
    assert new is None and out.action == "removed" and "unreadable" in out.detail
    new, out = purge_bytes("quarantine/a/x.csv", b"visitor,site\nbob,acme.com\n", MATCHER)
    assert out.action == "removed" and out.removed[7] == 1
    new, out = purge_bytes("quarantine/a/y.csv", b"visitor,site\namy,acme.com\n", MATCHER)
    assert out.action is None


def test_an_error_report_naming_the_id_is_redacted():
    report = json.dumps({"kind": "refused_by_database", "detail": 'line 2: value "bob" too long'}).encode()
    new, out = purge_bytes("quarantine/a/x.ndjson.error.json", report, MATCHER)
    assert b"bob" not in new and json.loads(new)["detail"] == 'line 2: value "[erased]" too long'
    assert out.action == "rewritten" and not out.removed
