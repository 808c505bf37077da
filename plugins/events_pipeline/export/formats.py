"""Per-client export options: file format, compression, server-side encryption, part bounds.

A client's options are columns of ``clients`` (migration 0090, contract §3.2):

==========================  ==========================================================
``export_format``           ``parquet`` (default) or ``jsonl`` (JSON Lines)
``export_compression``      Parquet: ``zstd`` (default), ``gzip``, ``snappy``, ``none``;
                            JSON Lines: ``gzip``, ``zstd``, ``none``
``export_sse``              NULL (no header: the bucket's default applies), ``AES256``
                            or ``aws:kms``
``export_sse_kms_key_id``   the KMS key (id, ARN, alias): required with ``aws:kms``,
                            forbidden otherwise
``export_part_max_bytes``   NULL (Variable ``events_export_part_max_bytes``) or bytes
``export_part_max_rows``    NULL (Variable ``events_export_part_max_rows``) or rows
==========================  ==========================================================

The table's CHECK constraints enforce the same rules as :meth:`ExportOptions.validate`,
which runs again before every export and client check, so a wrong value fails naming the
client and the column. Defaults produce exactly the files of before (Parquet, zstd level 1,
no SSE header, the Variables' part sizes).

JSON Lines: one object per line (``\\n``), the fields and values of the Parquet columns,
in the same order: strings as strings, NULL as ``null``, timestamps as ISO-8601 UTC
strings with microseconds (``2026-11-27T03:00:00.123456Z``), ``raw_event_data`` as
the JSON object itself (its stored text, embedded). :class:`JsonLinesWriter` streams
them into a part file, compressed as a whole (gzip or zstd) or not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from events_pipeline.common.errors import SettingError
from events_pipeline.export.keys import part_name

if TYPE_CHECKING:
    import pyarrow as pa

FORMAT_PARQUET = "parquet"
FORMAT_JSONL = "jsonl"
#: Compressions valid for each format (the first one is the format's default). Same
#: rule as the ``clients_export_compression_valid`` CHECK of migration 0090.
COMPRESSIONS: dict[str, tuple[str, ...]] = {
    FORMAT_PARQUET: ("zstd", "gzip", "snappy", "none"),
    FORMAT_JSONL: ("gzip", "zstd", "none"),
}
#: ``export_sse`` values (NULL: no header).
SSE_ALGORITHMS = ("AES256", "aws:kms")
#: A KMS key id, key ARN, alias name or alias ARN (same rule as the table's CHECK).
KMS_KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:/_.+=@-]{0,2047}$")
#: Bounds of ``export_part_max_bytes`` (a part is written to local disk before upload).
MIN_PART_BYTES = 1024 * 1024
MAX_PART_BYTES = 5 * 1024 * 1024 * 1024
#: Lower bound of ``export_part_max_rows``.
MIN_PART_ROWS = 1000

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
#: ``(format, compression)`` -> (file name ending, ``Content-Type`` of the object).
#: A compressed JSON Lines file is stored as what it is (gzip or zstd bytes), without
#: ``Content-Encoding``: HTTP clients would otherwise decompress it on download, and its
#: size and sha256 would no longer match the manifest.
FILE_TYPES: dict[tuple[str, str], tuple[str, str]] = {
    **{(FORMAT_PARQUET, c): (".parquet", PARQUET_CONTENT_TYPE) for c in COMPRESSIONS[FORMAT_PARQUET]},
    (FORMAT_JSONL, "none"): (".jsonl", "application/x-ndjson"),
    (FORMAT_JSONL, "gzip"): (".jsonl.gz", "application/gzip"),
    (FORMAT_JSONL, "zstd"): (".jsonl.zst", "application/zstd"),
}
#: The ``clients`` columns holding the options, with the :class:`ExportOptions` field each fills.
OPTION_COLUMNS: dict[str, str] = {
    "export_format": "format",
    "export_compression": "compression",
    "export_sse": "sse",
    "export_sse_kms_key_id": "sse_kms_key_id",
    "export_part_max_bytes": "part_max_bytes",
    "export_part_max_rows": "part_max_rows",
}
#: Columns holding JSON text: embedded as JSON values in JSON Lines, not as strings.
JSON_TEXT_COLUMNS = frozenset({"raw_event_data"})
#: ``strftime`` format of timestamps in JSON Lines; Arrow's ``%S`` of a ``timestamp[us]``
#: prints the seconds with their six decimals (``05.000123``).
JSONL_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class ExportOptionsError(SettingError):
    """A client's export options are invalid; names the client and the ``clients`` column.

    A :class:`SettingError` (an ``AirflowFailException``): retrying cannot help.
    """


@dataclass(frozen=True)
class ExportOptions:
    """How one client's files are written and stored.

    :param format: ``parquet`` or ``jsonl``.
    :param compression: a compression of :data:`COMPRESSIONS` for the format.
    :param sse: ``None`` (no SSE header), ``AES256`` or ``aws:kms``.
    :param sse_kms_key_id: the KMS key with ``aws:kms`` (else ``None``).
    :param part_max_bytes: the client's own byte bound of a part (``None``: the Variable).
    :param part_max_rows: the client's own row bound of a part (``None``: the Variable).
    """

    format: str = FORMAT_PARQUET
    compression: str = "zstd"
    sse: str | None = None
    sse_kms_key_id: str | None = None
    part_max_bytes: int | None = None
    part_max_rows: int | None = None

    @classmethod
    def from_row(cls, client_id: str, row: Mapping[str, Any]) -> ExportOptions:
        """Return the validated options of a ``clients`` row (missing columns take their defaults).

        :param client_id: the client, for the messages.
        :param row: the row, keyed by column name (:data:`OPTION_COLUMNS`).
        :raises ExportOptionsError: a value is invalid (names the client and the column).
        """
        defaults = cls()
        values = {
            field: row[column] if column in row else getattr(defaults, field)
            for column, field in OPTION_COLUMNS.items()
        }
        return cls(**values).validate(client_id)

    @classmethod
    def from_client(cls, client: Any) -> ExportOptions:
        """Return the validated options of a client configuration object.

        :param client: an object with ``client_id`` and the :data:`OPTION_COLUMNS` as
            attributes (``client_hour.ClientConfig``); a missing attribute takes its default.
        :raises ExportOptionsError: a value is invalid (names the client and the column).
        """
        row = {column: getattr(client, column) for column in OPTION_COLUMNS if hasattr(client, column)}
        return cls.from_row(client.client_id, row)

    def validate(self, client_id: str) -> ExportOptions:
        """Return ``self`` if every option is valid, else raise naming the client and the column.

        :param client_id: the client, for the message.
        :raises ExportOptionsError: the first invalid column.
        """

        def fail(column: str, value: Any, rule: str) -> ExportOptionsError:
            return ExportOptionsError(
                f"client {client_id!r}: clients.{column} = {value!r} is invalid ({rule}); fix the clients row"
            )

        if self.format not in COMPRESSIONS:
            raise fail("export_format", self.format, f"one of {', '.join(COMPRESSIONS)}")
        allowed = COMPRESSIONS[self.format]
        if self.compression not in allowed:
            raise fail(
                "export_compression",
                self.compression,
                f"with export_format {self.format!r} one of {', '.join(allowed)}",
            )
        if self.sse is not None and self.sse not in SSE_ALGORITHMS:
            raise fail("export_sse", self.sse, f"NULL or one of {', '.join(SSE_ALGORITHMS)}")
        if self.sse == "aws:kms":
            key = self.sse_kms_key_id
            if not isinstance(key, str) or not KMS_KEY_ID_RE.fullmatch(key):
                raise fail(
                    "export_sse_kms_key_id",
                    key,
                    "export_sse 'aws:kms' needs a KMS key id, key ARN or alias (no spaces)",
                )
        elif self.sse_kms_key_id is not None:
            raise fail("export_sse_kms_key_id", self.sse_kms_key_id, "only allowed with export_sse 'aws:kms'")
        for column, value, low, high in (
            ("export_part_max_bytes", self.part_max_bytes, MIN_PART_BYTES, MAX_PART_BYTES),
            ("export_part_max_rows", self.part_max_rows, MIN_PART_ROWS, None),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise fail(column, value, f"NULL or an integer of at least {low}")
            if high is not None and value > high:
                raise fail(column, value, f"at most {high}")
        return self

    @property
    def extension(self) -> str:
        """The data parts' file name ending (``.parquet``, ``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``)."""
        return FILE_TYPES[(self.format, self.compression)][0]

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` of the data part objects."""
        return FILE_TYPES[(self.format, self.compression)][1]

    def part_name(self, number: int) -> str:
        """Return the file name of data part ``number`` in this format (``part-00000.jsonl.gz``).

        :param number: the 0-based part number.
        """
        return part_name(number, self.extension)

    def sse_args(self) -> dict[str, str]:
        """Return the S3 put arguments of the client's encryption (``{}`` without SSE).

        Given to every ``put_object`` / ``upload_file`` into the client's bucket.
        """
        if self.sse is None:
            return {}
        args = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args

    def encryption(self) -> dict[str, str]:
        """Return the manifest's ``encryption`` object: ``{"sse": "none" | "AES256" | "aws:kms"}``,
        plus ``kms_key_id`` with ``aws:kms`` (the key's id, never key material)."""
        out = {"sse": self.sse or "none"}
        if self.sse == "aws:kms" and self.sse_kms_key_id:
            out["kms_key_id"] = self.sse_kms_key_id
        return out

    def manifest_fields(self) -> dict[str, Any]:
        """Return the fields the manifest records about these options (``format``, ``compression``,
        ``encryption``)."""
        return {"format": self.format, "compression": self.compression, "encryption": self.encryption()}

    def describe(self) -> str:
        """Return the options as one log-friendly line (no secrets: a KMS key id is not one)."""
        sse = self.sse or "none (bucket default)"
        if self.sse == "aws:kms":
            sse += f" key {self.sse_kms_key_id}"
        bounds = (
            f"part_max_bytes={self.part_max_bytes or 'Variable'} "
            f"part_max_rows={self.part_max_rows or 'Variable'}"
        )
        return (
            f"format={self.format} compression={self.compression} files=part-NNNNN{self.extension} "
            f"({self.content_type}) sse={sse} {bounds}"
        )


#: The options of a client that sets none: today's Parquet files.
DEFAULT_OPTIONS = ExportOptions()


def file_type_of(name: str) -> tuple[str, str | None]:
    """Return ``(format, compression)`` of a data part from its file name.

    A Parquet file's compression is inside the file (per column chunk): ``None`` here.

    :param name: a part's file name or key (``part-00000.jsonl.gz``).
    :raises ValueError: the name has none of the part endings.
    """
    for suffix, result in (
        (".parquet", (FORMAT_PARQUET, None)),
        (".jsonl.gz", (FORMAT_JSONL, "gzip")),
        (".jsonl.zst", (FORMAT_JSONL, "zstd")),
        (".jsonl", (FORMAT_JSONL, "none")),
    ):
        if name.endswith(suffix):
            return result
    raise ValueError(f"{name!r} is not an export part (.parquet, .jsonl, .jsonl.gz or .jsonl.zst)")


def encode_jsonl(table: pa.Table | pa.RecordBatch) -> bytes:
    """Return the rows of ``table`` as JSON Lines: one object per row, ``\\n`` after each.

    Fields in column order; strings as JSON strings; NULL as ``null``; timestamps as
    ISO-8601 UTC with microseconds; the :data:`JSON_TEXT_COLUMNS` embedded as the JSON
    value their text holds (the text itself, byte for byte, except that a line break
    between two of its tokens becomes a space: JSON cannot hold a raw line break inside
    a string, so one can only stand between tokens).

    :param table: rows with the export schema (``parquet_parts.arrow_schema``).
    """
    import orjson
    import pyarrow as pa
    import pyarrow.compute as pc

    names = list(table.schema.names)
    columns: list[list[Any]] = []
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            column = pc.strftime(column.cast(pa.timestamp("us", tz="UTC")), format=JSONL_TIMESTAMP_FORMAT)
            columns.append(column.to_pylist())
        elif field.name in JSON_TEXT_COLUMNS:
            column = pc.replace_substring(pc.replace_substring(column, "\n", " "), "\r", " ")
            columns.append([None if v is None else orjson.Fragment(v) for v in column.to_pylist()])
        else:
            columns.append(column.to_pylist())
    dumps = orjson.dumps
    rows = zip(*columns, strict=True)
    return b"".join(dumps(dict(zip(names, values, strict=True))) + b"\n" for values in rows)


#: gzip level of JSON Lines parts: zlib's default (Arrow's gzip stream only knows 9, ~4x slower
#: for ~6 % smaller files).
GZIP_LEVEL = 6


def _check_jsonl_compression(compression: str) -> str:
    """Return ``compression`` if JSON Lines supports it, else raise.

    :param compression: ``gzip``, ``zstd`` or ``none``.
    :raises ValueError: anything else.
    """
    if compression not in COMPRESSIONS[FORMAT_JSONL]:
        raise ValueError(f"JSON Lines compression {compression!r} is not one of {COMPRESSIONS[FORMAT_JSONL]}")
    return compression


def _compressing_stream(raw: BinaryIO, compression: str) -> Any:
    """Return a writable stream compressing into ``raw`` (``raw`` itself for ``none``).

    gzip: the standard library's, level :data:`GZIP_LEVEL`, no file name and time 0 in
    the header (deterministic bytes). zstd: Arrow's stream (zstd level 1).

    :param raw: the binary file object receiving the compressed bytes.
    :param compression: ``gzip``, ``zstd`` or ``none``.
    """
    import gzip

    import pyarrow as pa

    if _check_jsonl_compression(compression) == "gzip":
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0)
    if compression == "zstd":
        return pa.CompressedOutputStream(raw, "zstd")
    return raw


class JsonLinesWriter:
    """Writes rows into one JSON Lines part file, compressed as a whole (gzip, zstd) or not.

    The same interface as the ``pyarrow.parquet.ParquetWriter`` calls of the part writer
    (``write_table``, ``close``). Output is deterministic: the same rows give the same bytes.

    :param path: the part file to create.
    :param compression: ``gzip``, ``zstd`` or ``none``.
    """

    def __init__(self, path: Path, compression: str) -> None:
        _check_jsonl_compression(compression)
        self._raw = path.open("wb")
        self._stream = _compressing_stream(self._raw, compression)

    def write_table(self, table: pa.Table, row_group_size: int | None = None) -> None:
        """Append the rows of ``table`` to the file.

        :param table: rows with the export schema.
        :param row_group_size: ignored (JSON Lines has no row groups); accepted for the
            ParquetWriter interface.
        """
        self._stream.write(encode_jsonl(table))

    def close(self) -> None:
        """Finish the compressed stream and close the file."""
        if self._stream is not self._raw:
            self._stream.close()
        if not self._raw.closed:
            self._raw.close()


def compress(data: bytes, compression: str) -> bytes:
    """Compress whole JSON Lines content with the codec and level of :class:`JsonLinesWriter`.

    :param data: the uncompressed lines.
    :param compression: ``gzip``, ``zstd`` or ``none``.
    """
    import gzip

    import pyarrow as pa

    if _check_jsonl_compression(compression) == "gzip":
        return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    if compression == "zstd":
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, "zstd") as stream:
            stream.write(data)
        return sink.getvalue().to_pybytes()
    return data


def decompress(data: bytes, compression: str) -> bytes:
    """Return the JSON Lines text of a part's bytes.

    :param data: the object's bytes.
    :param compression: ``gzip``, ``zstd`` or ``none`` (see :func:`file_type_of`).
    """
    import gzip

    import pyarrow as pa

    if _check_jsonl_compression(compression) == "gzip":
        return gzip.decompress(data)
    if compression == "zstd":
        with pa.input_stream(pa.BufferReader(data), compression="zstd") as stream:
            return stream.read()
    return data


def jsonl_rows(data: bytes, compression: str) -> int:
    """Return the number of rows (lines) of a JSON Lines part.

    :param data: the object's bytes.
    :param compression: ``gzip``, ``zstd`` or ``none``.
    """
    return decompress(data, compression).count(b"\n")
