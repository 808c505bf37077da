"""The GDPR sweep treats IPv6 addresses that embed an IPv4 one as that IPv4 (/24).

Rows stored under the older rule kept such an address as its /48 network, which
for 6to4 still spells the visitor's IPv4 (``2002:cb00:714d::`` is 203.0.113.77).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from events_pipeline.privacy.ip_treatment import ip_pseudonym
from events_pipeline.privacy.sweep import run_gdpr_sweep

from .conftest import add_client, event, insert_events

SECRET = "test-ip-hash-secret-of-at-least-32-bytes"


@pytest.mark.parametrize(
    "stored",
    ["2002:cb00:714d::", "2001:0:4136:e378:8000:63bf:34ff:8eb2", "64:ff9b::cb00:714d", "::ffff:203.0.113.77"],
)
def test_sweep_rewrites_an_embedded_ipv4_stored_as_ipv6(maint_db, partitions_back, stored):
    db = maint_db
    add_client(db, "acme", privacy_level="gdpr")
    row = event(datetime.now(UTC) - timedelta(days=1), ip=stored, privacy_level="gdpr", visitor_id="v6")
    insert_events(db, [row])

    assert run_gdpr_sweep(db, SECRET) == {"acme": 1}

    ip, raw = db.execute("SELECT host(ip_address), raw_event_data FROM events_log").fetchone()
    assert ip == "203.0.113.0"
    assert raw["ip_address"] == "203.0.113.0"
    assert raw["ip_pseudonym"] == ip_pseudonym("203.0.113.77", SECRET)
    assert stored not in json.dumps(raw)
    assert run_gdpr_sweep(db, SECRET) == {"acme": 0}
