"""HourVisitors: the distinct visitor ids of the batches an export writes, batches passed on unchanged."""

from __future__ import annotations

import pyarrow as pa

from events_pipeline.export.visitor_index import HourVisitors


def test_collect_yields_every_batch_unchanged_and_keeps_the_distinct_visitors() -> None:
    batches = [
        pa.record_batch({"event_id": ["a", "b", "c"], "visitor_id": ["v1", None, "v2"]}),
        pa.record_batch({"event_id": [], "visitor_id": pa.array([], type=pa.string())}),
        pa.record_batch({"event_id": ["d", "e"], "visitor_id": ["v2", "v3"]}),
    ]
    visitors = HourVisitors()
    assert list(visitors.collect(iter(batches))) == batches
    assert visitors.ids == {"v1", "v2", "v3"}


def test_nothing_to_record_without_visitors() -> None:
    visitors = HourVisitors()
    list(visitors.collect(iter([pa.record_batch({"visitor_id": pa.array([None], type=pa.string())})])))
    assert visitors.record(conn=None, client_id="acme", hour_start=None) == 0
