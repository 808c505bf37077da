"""Rows and part checksums that pin the Parquet bytes of a client with default export options.

Shared by the unit test of the part writer and the end-to-end export test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 11, 27, 3, tzinfo=UTC)


def awkward_row(i: int) -> dict:
    """A deterministic row with NULLs, '' , unicode, quotes, newlines, IPv6 and microseconds."""
    return {
        "event_id": f"00000000-0000-4000-8000-{i:012d}",
        "event_type": ("pageview", "click", "signup")[i % 3],
        "session_id": None if i % 5 == 0 else f"s_{i // 4}",
        "visitor_id": "" if i % 7 == 0 else f"v_{i // 9}",
        "site_id": ("acme.com", "shop.acme.com")[i % 2],
        "timestamp": T0 + timedelta(seconds=i, microseconds=(i * 7919) % 1_000_000),
        "url": f'https://acme.com/p/{i}?q="x",y\nz',
        "path": f"/p/{i}/ü",
        "user_agent": None if i % 11 == 0 else "Mozilla/5.0 (日本)",
        "ip_address": ("203.0.113.7", "2001:db8::1", None)[i % 3],
        "raw_event_data": '{"a": ' + str(i) + ', "s": "x,y", "u": "\\u00e9"}',
        "created_at": T0 + timedelta(seconds=i, microseconds=1),
        "batch_id": f"b{i // 100}",
        "client_id": "acme",
    }


#: The pyarrow version the checksums were computed with (pinned in requirements.txt).
GOLDEN_PYARROW = "26.0.1"
#: sha256 of the parts the writer produced BEFORE per-client options existed (computed with
#: the previous parquet_parts.py, pyarrow 26.0.1, from the 250 rows of ``awkward_row`` in
#: batches of 17). Default settings must keep producing exactly these bytes. A pyarrow
#: upgrade changes the footer's "created_by" and so these values: recompute them then
#: with the writer as it is on the main branch before the upgrade.
GOLDEN_PARTS = {
    "defaults": [
        ("part-00000.parquet", 250, "fc612e1dfed4a851be3f7fd6be9c4283dbc915713b4e6f42e6feed4743ad923f")
    ],
    "rows=100 row_group=30": [
        ("part-00000.parquet", 100, "c60fb5a3656f1227235187d0fb46a2060b29ab755c091ae066898b0761eb9d64"),
        ("part-00001.parquet", 100, "7a27e9d44a0e69bdc8f2b1e66b0f6710601929233c802d4b8199e99e587ba8e4"),
        ("part-00002.parquet", 50, "e6c367323f58c077c7ec070b29126e35c964092b2f6182b16e7f672b8aba585a"),
    ],
    "bytes=6000 row_group=40": [
        ("part-00000.parquet", 120, "c19b889da5db30e42520dcd36145b9a2405ef02557fcbf942b2163821a1eca56"),
        ("part-00001.parquet", 120, "3460e0041daa258f2556947d1d1abc30c071b3085a8f287613de365e9a1d2ad5"),
        ("part-00002.parquet", 10, "9317a337e48524cf55e30121c54f9047dedbd54c6428049963c02b415ae3b09a"),
    ],
}
