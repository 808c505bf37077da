"""The backup visitor index: which visitors each exported hour of a client holds.

An erasure request must reach every backup hour that holds its visitor, also once
retention has deleted the visitor's rows from ``events_log`` (backups are kept far
longer than ``retention_days``). The export therefore records, per hour it commits, the
digests of the hour's visitors in ``backup_visitor_hours`` (client, digest, hour): the
digest of :mod:`events_pipeline.privacy.visitor_digest`, computed in SQL, never the id.

The visitors are collected from the record batches the export streams into its parts
(no second read of the hour's rows), then written by ``export/record_visitors.sql`` in
the export's transaction, after the marking: the hour's rows and its index commit
together or not at all. ``ON CONFLICT DO NOTHING``: a retry or re-run only adds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from events_pipeline.common.db import load_sql

if TYPE_CHECKING:
    import pyarrow as pa

#: The column of the export's schema that holds the visitor id.
VISITOR_COLUMN = "visitor_id"


class HourVisitors:
    """The distinct visitor ids of the rows one export run writes into an hour's parts."""

    def __init__(self) -> None:
        self._chunks: list[pa.Array] = []

    @property
    def ids(self) -> set[str]:
        """The distinct visitor ids collected so far (``None`` left out)."""
        return set(self._distinct())

    def _distinct(self) -> list[str]:
        """The distinct visitor ids collected so far, one Arrow ``unique`` over the batches' own."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self._chunks:
            return []
        chunks = [c.cast(pa.string()) if c.type != pa.string() else c for c in self._chunks]
        return [v for v in pc.unique(pa.chunked_array(chunks, type=pa.string())).to_pylist() if v is not None]

    def collect(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Yield ``batches`` unchanged, remembering the distinct visitor ids they hold.

        :param batches: record batches of the export's schema (a ``visitor_id`` column).
        """
        import pyarrow.compute as pc

        for batch in batches:
            index = batch.schema.get_field_index(VISITOR_COLUMN)
            if index >= 0 and batch.num_rows:
                self._chunks.append(pc.unique(batch.column(index)))
            yield batch

    def record(self, conn: Any, client_id: str, hour_start: Any) -> int:
        """Write the hour's visitors into the index (``record_visitors.sql``); return the rows added.

        :param conn: the connection of the export's transaction.
        :param client_id: the client.
        :param hour_start: the start of the exported hour.
        """
        visitors = self._distinct()
        if not visitors:
            return 0
        params = {"client_id": client_id, "hour_start": hour_start, "visitors": visitors}
        return conn.execute(load_sql("export/record_visitors.sql"), params).rowcount
