"""Stream the export query from PostgreSQL into Parquet (or JSON Lines) parts, in bounded memory.

:func:`iter_adbc_batches` gives typed Arrow record batches: the ADBC driver
(``adbc-driver-postgresql``) runs ``COPY (query) TO STDOUT (FORMAT binary)`` and
decodes it into Arrow in C++, in a second connection that imports the export
transaction's snapshot; no per-row Python work at all.

:func:`write_parts` encodes the batches into local part files: Parquet through a
``ParquetWriter`` (zstd level 1 by default; gzip, snappy or none per client), or JSON
Lines (``export/formats.py``, per client). When a part reaches ``part_max_rows`` rows
or ``part_max_bytes`` bytes it is closed, hashed and handed to a callback (the caller
uploads it and deletes it), then the next part starts. Memory holds a couple of Arrow
batches (~16 MiB each) and one row group, whatever the size of the hour.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from events_pipeline.export.formats import (
    COMPRESSIONS,
    FILE_TYPES,
    FORMAT_PARQUET,
    PARQUET_CONTENT_TYPE,
    ExportOptions,
    JsonLinesWriter,
    file_type_of,
    jsonl_rows,
)
from events_pipeline.export.keys import part_name
from events_pipeline.export.manifest import ExportedFile

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

log = logging.getLogger(__name__)

#: Exported columns in file order (contract §5 (docs/contract.md)) with their Arrow types.
#: ``timestamp``/``created_at`` are UTC timestamps, ``ip_address`` a string,
#: ``raw_event_data`` the JSON text of the stored object.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "string"),
    ("event_type", "string"),
    ("session_id", "string"),
    ("visitor_id", "string"),
    ("site_id", "string"),
    ("timestamp", "timestamp"),
    ("url", "string"),
    ("path", "string"),
    ("user_agent", "string"),
    ("ip_address", "string"),
    ("raw_event_data", "string"),
    ("created_at", "timestamp"),
    ("batch_id", "string"),
    ("client_id", "string"),
)
#: Columns with few distinct values per hour: dictionary-encoded. Unique or
#: near-unique ones (event_id, raw_event_data, timestamps, url, session_id,
#: visitor_id, ip_address) are not: building a dictionary that overflows only costs time.
DICTIONARY_COLUMNS = ("event_type", "site_id", "path", "user_agent", "batch_id", "client_id")
#: Columns that may never be NULL in the database.
NOT_NULL = frozenset({"event_id", "event_type", "timestamp", "raw_event_data", "created_at"})


def arrow_schema() -> pa.Schema:
    """Return the Arrow schema of exported files (timestamps ``timestamp[us, tz=UTC]``)."""
    import pyarrow as pa

    fields = []
    for name, kind in COLUMNS:
        typ = pa.timestamp("us", tz="UTC") if kind == "timestamp" else pa.string()
        fields.append(pa.field(name, typ, nullable=name not in NOT_NULL))
    return pa.schema(fields)


@dataclass
class PartSettings:
    """Size bounds and file format of the output.

    :param part_max_rows: roll over to a new part after this many rows.
    :param part_max_bytes: roll over once the part file reaches this many bytes.
    :param row_group_rows: rows per Parquet row group (and the most rows held in memory;
        for JSON Lines: rows encoded per write).
    :param compression_level: zstd level of Parquet parts (1: ~40 % less encode time than
        3 for ~1 % larger files).
    :param format: ``parquet`` or ``jsonl`` (``export/formats.py``).
    :param compression: a compression valid for ``format`` (``formats.COMPRESSIONS``).
    """

    part_max_rows: int = 1_000_000
    part_max_bytes: int = 256 * 1024 * 1024
    row_group_rows: int = 65_536
    compression_level: int = 1
    format: str = FORMAT_PARQUET
    compression: str = "zstd"

    def __post_init__(self) -> None:
        for name in ("part_max_rows", "part_max_bytes", "row_group_rows"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"export setting {name} must be positive, got {getattr(self, name)!r}")
        if self.compression not in COMPRESSIONS.get(self.format, ()):
            raise ValueError(
                f"export format {self.format!r} with compression {self.compression!r} is not valid"
            )

    def with_options(self, options: ExportOptions) -> PartSettings:
        """Return these settings with a client's options applied: its format and compression,
        and its own part bounds where it sets them (else these, from the Variables).

        :param options: the client's validated export options.
        """
        return replace(
            self,
            format=options.format,
            compression=options.compression,
            part_max_rows=options.part_max_rows or self.part_max_rows,
            part_max_bytes=options.part_max_bytes or self.part_max_bytes,
        )

    @property
    def extension(self) -> str:
        """File name ending of the parts (``.parquet``, ``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``)."""
        return FILE_TYPES[(self.format, self.compression)][0]

    @property
    def content_type(self) -> str:
        """``Content-Type`` of the parts."""
        return FILE_TYPES[(self.format, self.compression)][1]


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks.

    :param path: the file.
    """
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_part(name: str, data: bytes) -> ExportedFile:
    """Describe a data part of any format from its bytes, as a manifest entry lists it.

    The format comes from the name's ending (``formats.file_type_of``); rows are read from
    the Parquet footer, or counted as lines of (decompressed) JSON Lines.

    :param name: the entry's ``key`` (a file name relative to the manifest).
    :param data: the object's bytes.
    :raises ValueError: the name has none of the part endings.
    """
    fmt, compression = file_type_of(name)
    if fmt == FORMAT_PARQUET:
        return describe_parquet(name, data)
    assert compression is not None
    return ExportedFile(
        name,
        jsonl_rows(data, compression),
        len(data),
        hashlib.sha256(data).hexdigest(),
        content_type=FILE_TYPES[(fmt, compression)][1],
    )


def describe_parquet(name: str, data: bytes) -> ExportedFile:
    """Describe a Parquet object from its bytes, as a manifest entry lists it.

    :param name: the entry's ``key`` (a file name relative to the manifest).
    :param data: the object's bytes; its rows are read from the Parquet footer.
    """
    import io

    import pyarrow.parquet as pq

    rows = int(pq.ParquetFile(io.BytesIO(data)).metadata.num_rows)
    return ExportedFile(
        name, rows, len(data), hashlib.sha256(data).hexdigest(), content_type=PARQUET_CONTENT_TYPE
    )


def iter_adbc_batches(
    conninfo: str,
    snapshot: str,
    query: str,
    batch_bytes: int = 16 * 1024 * 1024,
) -> Iterator[pa.RecordBatch]:
    """Run ``query`` through ADBC in the exported ``snapshot``; yield batches of :func:`arrow_schema`.

    The reading connection joins the caller's ``REPEATABLE READ`` transaction's
    view of the data (``SET TRANSACTION SNAPSHOT``): it reads exactly the rows
    the caller's UPDATE with the same predicate sees, and none of that UPDATE's
    changes. The snapshot is valid while the caller's transaction stays open.
    The low-level ADBC API is used (its DB-API module imports pandas: ~1 s).

    :param conninfo: libpq connection string of the events database (session
        settings may be given in its ``options``).
    :param snapshot: the id from ``pg_export_snapshot()`` in the caller's transaction.
    :param query: the SELECT, values already bound; column names and types as :data:`COLUMNS`
        (timestamps as UTC wall-clock ``timestamp``, the rest text).
    :param batch_bytes: approximate bytes per Arrow batch (bounds memory).
    """
    import adbc_driver_manager as adbc
    import adbc_driver_postgresql

    db = adbc_driver_postgresql.connect(conninfo)
    try:
        conn = adbc.AdbcConnection(db)
        try:
            conn.set_autocommit(False)
            _adbc_execute(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            _adbc_execute(conn, f"SET TRANSACTION SNAPSHOT '{_snapshot_literal(snapshot)}'")
            yield from _adbc_query_batches(conn, query, batch_bytes)
            conn.rollback()  # read only: nothing to keep
        finally:
            conn.close()
    finally:
        db.close()


def _adbc_execute(conn: Any, sql: str) -> None:
    """Run one statement without a result set on an ADBC connection.

    :param conn: an ``adbc_driver_manager.AdbcConnection``.
    :param sql: the statement.
    """
    import adbc_driver_manager as adbc

    stmt = adbc.AdbcStatement(conn)
    try:
        stmt.set_sql_query(sql)
        stmt.execute_update()
    finally:
        stmt.close()


def _adbc_query_batches(conn: Any, query: str, batch_bytes: int) -> Iterator[pa.RecordBatch]:
    """Run ``query`` on an ADBC connection; yield its non-empty batches cast to :func:`arrow_schema`.

    :param conn: an ``adbc_driver_manager.AdbcConnection`` inside the snapshot's transaction.
    :param query: the SELECT, values already bound.
    :param batch_bytes: approximate bytes per Arrow batch.
    """
    import adbc_driver_manager as adbc
    import pyarrow as pa

    schema = arrow_schema()
    stmt = adbc.AdbcStatement(conn)
    try:
        stmt.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(batch_bytes)})
        stmt.set_sql_query(query)
        stream, _ = stmt.execute_query()
        reader = pa.RecordBatchReader._import_from_c(stream.address)
        for batch in reader:
            if batch.num_rows:
                yield batch.cast(schema)
    finally:
        stmt.close()


def _snapshot_literal(snapshot: str) -> str:
    """Return ``snapshot`` if it looks like a PostgreSQL snapshot id (``0000000A-0000001B-1``), else fail.

    :param snapshot: the id from ``pg_export_snapshot()``.
    :raises ValueError: anything else (it is put into SQL text).
    """
    if not re.fullmatch(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+", snapshot):
        raise ValueError(f"not a PostgreSQL snapshot id: {snapshot!r}")
    return snapshot


def write_parts(
    batches: Iterable[pa.RecordBatch],
    workdir: Path,
    on_part: Callable[[Path, ExportedFile], None],
    settings: PartSettings | None = None,
) -> list[ExportedFile]:
    """Write record batches into part files, handing each finished part to ``on_part``.

    Parts are named ``part-00000.parquet``, ``part-00001.parquet``... (the ending of
    ``settings.format`` and ``settings.compression``). An empty input writes no part at all.

    :param batches: record batches with the schema of :func:`arrow_schema`.
    :param workdir: a scratch folder for the part being written.
    :param on_part: called with ``(local path, ExportedFile)`` once a part is
        closed (upload it there; the file is deleted after the call returns).
    :param settings: size bounds (defaults when ``None``).
    :return: the parts in order.
    """
    writer = _PartWriter(workdir, on_part, settings or PartSettings())
    for batch in batches:
        writer.add(batch)
    return writer.finish()


class _PartWriter:
    """Gathers record batches into whole row groups and writes them to rolling part files.

    Rows wait in memory until a full row group (``row_group_rows``) is there, so
    every row group but the last is full size. A part is closed (hashed, handed
    to ``on_part``, deleted) after the row group that reaches ``part_max_rows``
    rows or ``part_max_bytes`` bytes.

    :param workdir: the scratch folder of the part being written.
    :param on_part: receives each closed part (see :func:`write_parts`).
    :param settings: the size bounds.
    """

    def __init__(
        self, workdir: Path, on_part: Callable[[Path, ExportedFile], None], settings: PartSettings
    ) -> None:
        self.workdir = workdir
        self.on_part = on_part
        self.settings = settings
        self.schema = arrow_schema()
        #: the parts closed so far, in order
        self.parts: list[ExportedFile] = []
        self._writer: pq.ParquetWriter | JsonLinesWriter | None = None
        self._path: Path | None = None
        self._part_rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """Take one batch; write the row groups it completes.

        :param batch: a record batch of :func:`arrow_schema` (empty ones are skipped).
        """
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.settings.row_group_rows:
            self._flush(final=False)

    def finish(self) -> list[ExportedFile]:
        """Write the rows still waiting, close the last part and return every part in order."""
        self._flush(final=True)
        if self._writer is not None:
            self._close_part()
        return self.parts

    def _flush(self, *, final: bool) -> None:
        """Write whole row groups from the waiting rows (and the short remainder when ``final``).

        :param final: no more rows will come: write the tail too.
        """
        import pyarrow as pa

        if not self._pending_rows:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        written = self._write_row_groups(table, final=final)
        rest = table.slice(written)
        self._pending, self._pending_rows = rest.to_batches(), rest.num_rows

    def _write_row_groups(self, table: pa.Table, *, final: bool) -> int:
        """Write ``table`` one row group at a time, rolling parts over; return the rows written.

        One row group at a time, so the byte bound is checked after each. A short
        tail is kept for the next row group unless ``final``.

        :param table: the waiting rows.
        :param final: write a short tail too.
        """
        settings = self.settings
        offset = 0
        while offset < table.num_rows:
            if self._writer is None:
                self._open_part()
            left = table.num_rows - offset
            take = min(left, settings.part_max_rows - self._part_rows, settings.row_group_rows)
            if take < settings.row_group_rows and take == left and not final:
                break  # keep a short tail for the next row group
            self._writer.write_table(table.slice(offset, take), row_group_size=take)
            self._part_rows += take
            offset += take
            if self._part_full():
                self._close_part()
        return offset

    def _part_full(self) -> bool:
        """Tell whether the open part reached its row or byte bound."""
        assert self._path is not None
        return (
            self._part_rows >= self.settings.part_max_rows
            or self._path.stat().st_size >= self.settings.part_max_bytes
        )

    def _open_part(self) -> None:
        """Start the next part file (``part-NNNNN.<ext>``, numbered after the closed ones)."""
        import pyarrow.parquet as pq

        settings = self.settings
        self._path = self.workdir / part_name(len(self.parts), settings.extension)
        if settings.format == FORMAT_PARQUET:
            self._writer = pq.ParquetWriter(
                str(self._path),
                self.schema,
                compression=settings.compression,
                compression_level=settings.compression_level if settings.compression == "zstd" else None,
                use_dictionary=list(DICTIONARY_COLUMNS),
                write_statistics=True,
            )
        else:
            self._writer = JsonLinesWriter(self._path, settings.compression)
        self._part_rows = 0

    def _close_part(self) -> None:
        """Close the open part, describe it, hand it to ``on_part`` and delete the local file."""
        assert self._writer is not None and self._path is not None
        path = self._path
        self._writer.close()
        info = ExportedFile(
            path.name,
            self._part_rows,
            path.stat().st_size,
            sha256_file(path),
            content_type=self.settings.content_type,
        )
        self.parts.append(info)
        try:
            self.on_part(path, info)
        finally:
            path.unlink(missing_ok=True)
        self._writer, self._path = None, None
