"""Billing constants that other code and docs rely on."""

from __future__ import annotations

import re

from events_pipeline.billing.daily_rollup import TOTAL_ROW


def test_total_row_cannot_collide_with_a_client_id():
    # clients.client_id must match ^[a-z0-9][a-z0-9_-]{0,62}$ (migration 0001).
    assert not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", TOTAL_ROW)
