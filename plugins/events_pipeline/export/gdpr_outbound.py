"""No raw IP leaves for a GDPR client: rows stored before its switch are treated on the way out.

Ingest treats the events of a client that is ``gdpr`` when they are loaded; rows
stored while the client was ``standard`` keep their address until the daily sweep
(``privacy.sweep``). An export of a client that is ``gdpr`` NOW must not wait for it:

1. in the export's snapshot, before anything is read for the files,
   :func:`find_untreated` selects the hour's rows of the client whose
   ``privacy_level`` is not ``gdpr`` (``export/untreated_rows.sql``, the same rows
   the export takes) and treats each with the privacy package's public treatment of a
   stored row (``fast_treatment.IpProtector.protect_stored``: the rule of
   ``ip_treatment.protect_event`` that ingest and the sweep apply - truncated address,
   keyed pseudonym, nested addresses - as an edit of the stored text, exactly what the
   sweep would store);
2. :meth:`Untreated.rewrite` replaces those rows' ``ip_address`` and
   ``raw_event_data`` in the Arrow batches on their way to the files;
3. :meth:`Untreated.write_back` stores the same treated values (and
   ``privacy_level = 'gdpr'``) in the export's transaction, before its commit, so a
   re-run writes the same bytes and the sweep finds nothing left.

A client that is ``standard`` costs nothing here; a ``gdpr`` client costs one indexed
read of its hour's rows (normally all already ``gdpr``, so nothing else happens).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from events_pipeline.common.db import load_sql
from events_pipeline.common.settings import VAR_IP_HASH_SECRET, get_setting
from events_pipeline.privacy.fast_treatment import IpProtector

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

GDPR = "gdpr"


@dataclass
class Untreated:
    """The rows of an exported hour that still hold what a GDPR client must not receive.

    :param client_id: the client.
    :param treated: ``(event_id, stored ip text, stored raw text)`` -> ``(treated ip, treated raw)``.
    :param keys: ``(id, created_at)`` of each treated row, with its treated ip and raw text.
    """

    client_id: str
    treated: dict[tuple[str, str | None, str], tuple[str | None, str]] = field(default_factory=dict)
    keys: list[tuple[int, datetime, str | None, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def rewrite(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Yield ``batches`` with the treated values in place of the stored ones.

        :param batches: record batches of the export's schema (``ip_address`` and
            ``raw_event_data`` as strings).
        """
        if not self:
            yield from batches
            return
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = pa.array(sorted({k[0] for k in self.treated}), pa.string())
        for batch in batches:
            hits = pc.is_in(batch.column("event_id"), value_set=wanted)
            if not pc.any(hits).as_py():
                yield batch
                continue
            yield self._rewrite_batch(batch, hits.to_pylist())

    def _rewrite_batch(self, batch: pa.RecordBatch, hits: list[bool]) -> pa.RecordBatch:
        """Return ``batch`` with the treated ``ip_address`` / ``raw_event_data`` of its hit rows.

        :param batch: a record batch.
        :param hits: per row, whether its event id is one of the treated rows'.
        """
        import pyarrow as pa

        names = batch.schema.names
        event_ids = batch.column("event_id").to_pylist()
        ips = batch.column("ip_address").to_pylist()
        raws = batch.column("raw_event_data").to_pylist()
        for i, hit in enumerate(hits):
            if hit:
                found = self.treated.get((event_ids[i], ips[i], raws[i]))
                if found is not None:
                    ips[i], raws[i] = found
        columns = list(batch.columns)
        columns[names.index("ip_address")] = pa.array(ips, pa.string())
        columns[names.index("raw_event_data")] = pa.array(raws, pa.string())
        return pa.RecordBatch.from_arrays(columns, schema=batch.schema)

    def write_back(self, conn: Any) -> int:
        """Store the treated values (and ``privacy_level = 'gdpr'``) in ``events_log``, before the commit.

        :param conn: the export's connection, inside its transaction (after the marking).
        :return: rows updated.
        """
        if not self:
            return 0
        ids, created, ips, raws = (list(col) for col in zip(*self.keys, strict=True))
        params = {"ids": ids, "created_at": created, "ips": ips, "raws": raws}
        return conn.execute(load_sql("export/treat_rows.sql"), params).rowcount


def treat_text(raw_text: str, ip: str | None, protector: IpProtector) -> tuple[str | None, str]:
    """Apply the GDPR treatment to one stored row; return ``(treated ip, treated raw JSON text)``.

    The privacy package's treatment of a stored row (what the sweep stores): a top-level
    ``ip_address`` that is not an IP literal becomes ``null``.

    :param raw_text: the stored ``raw_event_data`` text.
    :param ip: the stored ``ip_address`` (``host()`` text), or None.
    :param protector: the treatment with the pseudonym key (Variable ``events_ip_hash_secret``).
    """
    text, truncated, _invalid = protector.protect_stored(raw_text, ip)
    return truncated, text


def find_untreated(conn: Any, client_id: str, privacy_level: str, params: dict[str, Any]) -> Untreated:
    """Return the hour's rows of a GDPR client stored without the treatment, treated.

    Runs in the export's transaction, so it sees exactly the rows the export reads.

    :param conn: the export's connection, inside its snapshot, before the read starts.
    :param client_id: the client.
    :param privacy_level: the client's ``privacy_level`` now (nothing to do unless ``gdpr``).
    :param params: the export statements' parameters (client, hour, claim).
    :raises SettingError: the pseudonym key is missing or too short (names the Variable).
    """
    found = Untreated(client_id)
    if privacy_level != GDPR:
        return found
    rows = conn.execute(load_sql("export/untreated_rows.sql"), params).fetchall()
    if not rows:
        return found
    protector = IpProtector(str(get_setting(VAR_IP_HASH_SECRET)))
    for row_id, created_at, event_id, ip_text, host_ip, raw_text in rows:
        treated_ip, treated_raw = treat_text(raw_text, host_ip, protector)
        found.treated[(event_id, ip_text, raw_text)] = (treated_ip, treated_raw)
        found.keys.append((row_id, created_at, treated_ip, treated_raw))
    log.info(
        "export client=%s: %d row(s) stored before the client became gdpr get the GDPR IP treatment "
        "in this export and in events_log (privacy_level -> gdpr)",
        client_id,
        len(found.keys),
    )
    return found
