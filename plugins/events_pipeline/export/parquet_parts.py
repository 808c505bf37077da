"""Stream the export query from PostgreSQL into Parquet parts, in bounded memory.

Two readers give typed Arrow record batches:

- :func:`iter_adbc_batches` (preferred, when ``adbc-driver-postgresql`` is
  installed): the ADBC driver runs ``COPY (query) TO STDOUT (FORMAT binary)``
  and decodes it into Arrow in C++, in a second connection that imports the
  export transaction's snapshot; no per-row Python work at all;
- :func:`iter_record_batches` (fallback): psycopg's ``COPY ... (FORMAT csv)``
  rows parsed block by block by Arrow's CSV reader.

A ``ParquetWriter`` encodes the batches with zstd into a local part file. When a part
reaches ``part_max_rows`` rows or ``part_max_bytes`` bytes it is closed, hashed
and handed to a callback (the caller uploads it and deletes it), then the next
part starts. Memory holds a couple of CSV blocks (16 MiB each) and one row group, whatever the
size of the hour.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from events_pipeline.export.keys import part_name
from events_pipeline.export.manifest import ExportedFile

if TYPE_CHECKING:
    import pyarrow as pa

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


def _csv_types() -> dict[str, Any]:
    import pyarrow as pa

    # The COPY query renders timestamps as UTC wall-clock text; the reader parses
    # them as naive timestamp[us] and the schema cast labels them UTC (same values).
    return {n: pa.timestamp("us") if k == "timestamp" else pa.string() for n, k in COLUMNS}


class _Failure:
    """An exception raised in the prefetch thread, handed to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` in a background thread, ``depth`` items ahead.

    The COPY stream and Arrow's CSV parsing run in the thread while the caller
    encodes Parquet (both release the GIL), so the database, the parser and the
    encoder work at the same time. At most ``depth`` items wait in memory. An
    exception in the thread is re-raised in the caller; when the caller stops
    early, the thread stops after its current item.

    :param items: an iterable consumed only by the thread.
    :param depth: how many items may wait.
    """
    import queue
    import threading

    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consumer thread
            put(_Failure(exc))

    thread = threading.Thread(target=produce, name="export-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


class _ChunkStream(io.RawIOBase):
    """A read-only file over an iterator of ``bytes`` chunks (what psycopg's ``copy`` yields)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        # Fill the whole request unless the stream ends: Arrow's CSV reader treats
        # each read as a block, and a row may not straddle two short reads. psycopg
        # yields one row per chunk, so chunks are gathered and joined once per read.
        view = memoryview(target).cast("B")
        wanted = len(view)
        pieces = [self._buffer] if self._buffer else []
        size = len(self._buffer)
        chunks = self._chunks
        while size < wanted:
            chunk = next(chunks, None)
            if chunk is None:
                break
            pieces.append(chunk)
            size += len(chunk)
        data = b"".join(pieces)
        n = min(wanted, len(data))
        view[:n] = data[:n]
        self._buffer = data[n:]
        self.bytes_read += n
        return n


@dataclass
class PartSettings:
    """Size bounds of the Parquet output.

    :param part_max_rows: roll over to a new part after this many rows.
    :param part_max_bytes: roll over once the part file reaches this many bytes.
    :param row_group_rows: rows per Parquet row group (and the most rows held in memory).
    :param csv_block_bytes: bytes of CSV parsed at a time.
    :param compression_level: zstd level (1: ~40 % less encode time than 3 for ~1 % larger files).
    """

    part_max_rows: int = 1_000_000
    part_max_bytes: int = 256 * 1024 * 1024
    row_group_rows: int = 65_536
    csv_block_bytes: int = 16 * 1024 * 1024
    compression_level: int = 1

    def __post_init__(self) -> None:
        for name in ("part_max_rows", "part_max_bytes", "row_group_rows", "csv_block_bytes"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"export setting {name} must be positive, got {getattr(self, name)!r}")


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks.

    :param path: the file.
    """
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def iter_record_batches(
    chunks: Iterable[bytes], block_bytes: int = 16 * 1024 * 1024
) -> Iterator[pa.RecordBatch]:
    """Parse a CSV stream from ``COPY (query) TO STDOUT (FORMAT csv)`` into typed record batches.

    NULL (unquoted empty field) becomes null, ``""`` an empty string; values may
    hold quoted newlines.

    :param chunks: the raw bytes chunks of the COPY output, columns as :data:`COLUMNS`.
    :param block_bytes: CSV block size (bounds the memory of one batch).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    schema = arrow_schema()
    stream = iter(chunks)
    first = next((c for c in stream if c), None)
    if first is None:  # no rows: Arrow refuses an empty CSV
        return
    reader = pacsv.open_csv(
        pa.PythonFile(_ChunkStream(itertools.chain([first], stream)), mode="r"),
        read_options=pacsv.ReadOptions(
            column_names=[n for n, _ in COLUMNS], block_size=block_bytes, use_threads=True
        ),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=_csv_types(),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    )
    for batch in reader:
        yield batch.cast(schema)


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
    import pyarrow as pa

    schema = arrow_schema()
    db = adbc_driver_postgresql.connect(conninfo)
    try:
        conn = adbc.AdbcConnection(db)
        try:
            conn.set_autocommit(False)

            def run(sql: str) -> None:
                stmt = adbc.AdbcStatement(conn)
                try:
                    stmt.set_sql_query(sql)
                    stmt.execute_update()
                finally:
                    stmt.close()

            run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            run(f"SET TRANSACTION SNAPSHOT '{_snapshot_literal(snapshot)}'")
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
            conn.rollback()  # read only: nothing to keep
        finally:
            conn.close()
    finally:
        db.close()


def _snapshot_literal(snapshot: str) -> str:
    """Return ``snapshot`` if it looks like a PostgreSQL snapshot id (``0000000A-0000001B-1``), else fail."""
    import re

    if not re.fullmatch(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+", snapshot):
        raise ValueError(f"not a PostgreSQL snapshot id: {snapshot!r}")
    return snapshot


def write_parts(
    batches: Iterable[pa.RecordBatch],
    workdir: Path,
    on_part: Callable[[Path, ExportedFile], None],
    settings: PartSettings | None = None,
) -> list[ExportedFile]:
    """Write record batches into Parquet (zstd) part files, handing each finished part to ``on_part``.

    Parts are named ``part-00000.parquet``, ``part-00001.parquet``... An empty
    input writes no part at all.

    :param batches: record batches with the schema of :func:`arrow_schema`.
    :param workdir: a scratch folder for the part being written.
    :param on_part: called with ``(local path, ExportedFile)`` once a part is
        closed (upload it there; the file is deleted after the call returns).
    :param settings: size bounds (defaults when ``None``).
    :return: the parts in order.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    settings = settings or PartSettings()
    schema = arrow_schema()
    parts: list[ExportedFile] = []
    writer: pq.ParquetWriter | None = None
    path: Path | None = None
    part_rows = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def open_part() -> None:
        nonlocal writer, path, part_rows
        path = workdir / part_name(len(parts))
        writer = pq.ParquetWriter(
            str(path),
            schema,
            compression="zstd",
            compression_level=settings.compression_level,
            use_dictionary=list(DICTIONARY_COLUMNS),
            write_statistics=True,
        )
        part_rows = 0

    def close_part() -> None:
        nonlocal writer, path
        assert writer is not None and path is not None
        writer.close()
        info = ExportedFile(path.name, part_rows, path.stat().st_size, sha256_file(path))
        parts.append(info)
        try:
            on_part(path, info)
        finally:
            path.unlink(missing_ok=True)
        writer, path = None, None

    def flush(final: bool = False) -> None:
        """Write whole row groups from ``pending`` (and the remainder when ``final``)."""
        nonlocal pending, pending_rows, part_rows
        if not pending_rows:
            return
        table = pa.Table.from_batches(pending, schema=schema)
        offset = 0
        while offset < table.num_rows:
            if writer is None:
                open_part()
            # one row group at a time, so the byte bound is checked after each
            take = min(table.num_rows - offset, settings.part_max_rows - part_rows, settings.row_group_rows)
            if take < settings.row_group_rows and take == table.num_rows - offset and not final:
                break  # keep a short tail for the next row group
            writer.write_table(table.slice(offset, take), row_group_size=take)
            part_rows += take
            offset += take
            if part_rows >= settings.part_max_rows or path.stat().st_size >= settings.part_max_bytes:
                close_part()
        rest = table.slice(offset)
        pending, pending_rows = rest.to_batches(), rest.num_rows

    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows >= settings.row_group_rows:
            flush()
    flush(final=True)
    if writer is not None:
        close_part()
    return parts
