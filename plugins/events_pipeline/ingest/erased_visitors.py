"""Erased visitors at ingest: lines an erasure's tombstone says must not come back (contract §6.5).

A done erasure request leaves a tombstone (client, visitor digest, ``erased_through``,
request). A landing file that arrives later may still hold the visitor's older events
(a collector's backlog, a replayed file, a late retry): an event attributed to that
client, of that visitor, whose ``timestamp`` is not after ``erased_through`` is dropped
- neither loaded nor rejected - and counted per request. An event of the visitor after
``erased_through`` (the visitor came back) is loaded as any other.

:class:`ErasedVisitors` holds the tombstones of the clients a file may be attributed to,
read once per claimed file (``include/sql/ingest/tombstones.sql``). Without any (the
normal case) it is empty and the builders do not look at it at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from events_pipeline.common.db import load_sql
from events_pipeline.privacy.visitor_digest import DIGEST_SEPARATOR, visitor_digest

if TYPE_CHECKING:
    import psycopg


class ErasedVisitors:
    """The tombstones of some clients: (client, visitor digest) -> (erased through, request id).

    :param tombstones: ``(client_id, visitor_digest, erased_through, request_id)`` rows.
    """

    def __init__(self, tombstones: Iterable[tuple[str, bytes, datetime, int]] = ()) -> None:
        self._by_client: dict[str, dict[bytes, tuple[datetime, int]]] = {}
        for client_id, digest, erased_through, request_id in tombstones:
            self._by_client.setdefault(client_id, {})[bytes(digest)] = (erased_through, int(request_id))
        #: the clients that have a tombstone
        self.clients = frozenset(self._by_client)

    def __bool__(self) -> bool:
        return bool(self._by_client)

    def __len__(self) -> int:
        return sum(len(d) for d in self._by_client.values())

    @classmethod
    def load(cls, conn: psycopg.Connection, clients: Iterable[str]) -> ErasedVisitors:
        """Read the tombstones of ``clients`` (one query; none: an empty, falsy instance).

        :param conn: an open connection.
        :param clients: the clients a file's events may be attributed to.
        """
        wanted = sorted({c for c in clients if c})
        if not wanted:
            return cls()
        return cls(conn.execute(load_sql("ingest/tombstones.sql"), {"clients": wanted}).fetchall())

    def tombstone(self, client_id: str | None, visitor_id: Any) -> tuple[datetime, int] | None:
        """The tombstone of (client, visitor): ``(erased_through, request_id)``, or None.

        :param client_id: the client the event is attributed to (None or ``""``: unattributed).
        :param visitor_id: the event's ``visitor_id`` as decoded (not a string: no tombstone).
        """
        if not client_id or type(visitor_id) is not str:
            return None
        digests = self._by_client.get(client_id)
        if digests is None:
            return None
        return digests.get(visitor_digest(client_id, visitor_id))

    def erased_by(self, client_id: str | None, visitor_id: Any, timestamp: datetime | None) -> int | None:
        """The request whose erasure covers this event (drop it), or None (keep it).

        :param client_id: the client the event is attributed to.
        :param visitor_id: the event's ``visitor_id``.
        :param timestamp: the event's instant; None when it has none that can be read (a
            line rejected for its timestamp): covered, as nothing shows it came later.
        """
        found = self.tombstone(client_id, visitor_id)
        if found is None:
            return None
        erased_through, request_id = found
        if timestamp is not None and timestamp > erased_through:
            return None  # the visitor came back after the erasure
        return request_id

    def matching_keys(self, keys: Iterable[str]) -> list[str]:
        """Of ``client_id`` U+001F ``visitor_id`` keys, those of a tombstone (the fast path's pre-check).

        :param keys: distinct keys spelled as :func:`~events_pipeline.privacy.visitor_digest.visitor_digest`
            hashes them.
        """
        out = []
        for key in keys:
            client_id, _, visitor_id = key.partition(DIGEST_SEPARATOR)
            if self.tombstone(client_id, visitor_id) is not None:
                out.append(key)
        return out
