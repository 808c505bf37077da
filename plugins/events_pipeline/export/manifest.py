"""The ``_manifest.json`` of an exported hour: the commit marker of the export.

Format (``format_version`` 1)::

    {"format_version": 1, "client_id": "acme",
     "interval_start": "2026-11-27T03:00:00Z", "interval_end": "2026-11-27T04:00:00Z",
     "format": "parquet", "compression": "zstd", "encryption": {"sse": "none"},
     "row_count": 1234,
     "files": [{"key": "part-00000.parquet", "rows": 1234, "bytes": 56789, "sha256": "...",
                "content_type": "application/vnd.apache.parquet"}],
     "generated_at": "2026-11-27T04:01:02.345678Z"}

``format``, ``compression``, ``encryption`` (the client's export options, ``export/formats.py``;
a KMS key id but never key material) and ``files[].content_type`` were added within
version 1: manifests written before them lack them and stay valid.

``files[].key`` is RELATIVE to the folder holding the manifest (a plain file
name), so the same manifest is valid in the client bucket and in the backup
bucket. A reader resolves it with :func:`resolve_key`. An empty hour has
``row_count`` 0 and ``files`` ``[]``. The manifest is written after every data
file: a folder without a manifest is an export in progress (or a failed one).

Erasure edits published manifests in place (:func:`file_entries`,
:func:`update_file_entry`) and writes them back with the same serialisation
(:func:`manifest_bytes`), so the format has this one definition.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from events_pipeline.common.errors import PipelineError
from events_pipeline.common.intervals import HourInterval
from events_pipeline.export.formats import (
    COMPRESSIONS,
    DEFAULT_OPTIONS,
    FILE_TYPES,
    KMS_KEY_ID_RE,
    SSE_ALGORITHMS,
)

FORMAT_VERSION = 1
#: ``Content-Type`` of ``_manifest.json`` objects.
CONTENT_TYPE = "application/json"
_REQUIRED = ("format_version", "client_id", "interval_start", "interval_end", "row_count", "files")
_FILE_KEYS = ("key", "rows", "bytes", "sha256")
#: Optional fields of a ``files[]`` entry (absent in manifests of older writers).
_OPTIONAL_FILE_KEYS = ("content_type",)


class ManifestError(PipelineError):
    """A manifest is malformed (names the field at fault)."""


@dataclass(frozen=True)
class ExportedFile:
    """One data file of an export.

    :param key: file name relative to the manifest's folder.
    :param rows: rows in the file.
    :param bytes: size in bytes.
    :param sha256: hex SHA-256 of the file's bytes.
    :param content_type: the object's ``Content-Type`` (``None``: not recorded).
    """

    key: str
    rows: int
    bytes: int
    sha256: str
    content_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the manifest entry of the file (``content_type`` only when known)."""
        entry: dict[str, Any] = {
            "key": self.key,
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }
        if self.content_type is not None:
            entry["content_type"] = self.content_type
        return entry


def format_ts(value: datetime) -> str:
    """Return ``value`` as ISO-8601 UTC with a ``Z`` (microseconds only when non-zero).

    :param value: an aware datetime.
    """
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def parse_ts(text: str, *, field: str = "timestamp") -> datetime:
    """Parse an ISO-8601 timestamp written by :func:`format_ts`.

    :param text: the text (``Z`` or an offset).
    :param field: the manifest field, for the message.
    :raises ManifestError: not an ISO-8601 timestamp with a zone.
    """
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"manifest field {field!r}: {text!r} is not an ISO-8601 timestamp") from exc
    if value.tzinfo is None:
        raise ManifestError(f"manifest field {field!r}: {text!r} has no time zone")
    return value.astimezone(UTC)


def build_manifest(
    client_id: str,
    hour: HourInterval,
    files: Iterable[ExportedFile | Mapping[str, Any]],
    *,
    generated_at: datetime | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the manifest dict of one client's hour.

    :param client_id: the client.
    :param hour: the exported hour.
    :param files: the data files in part order (``ExportedFile`` or dicts with
        ``key``, ``rows``, ``bytes``, ``sha256`` and maybe ``content_type``); keys
        relative to the folder.
    :param generated_at: when the export was produced (default: now).
    :param options: the client's export options as the manifest records them
        (``ExportOptions.manifest_fields()``: ``format``, ``compression``, ``encryption``);
        default: those of a client with default options (Parquet, zstd, no SSE).
    :raises ManifestError: a file key is not a plain relative file name, or does not
        end as the format requires.
    """
    entries = []
    for f in files:
        if isinstance(f, ExportedFile):
            entry = f.as_dict()
        else:
            entry = {k: f[k] for k in (*_FILE_KEYS, *_OPTIONAL_FILE_KEYS) if k in f}
        _check_file_entry(entry, len(entries))
        entries.append(entry)
    fields = dict(options if options is not None else DEFAULT_OPTIONS.manifest_fields())
    manifest = {
        "format_version": FORMAT_VERSION,
        "client_id": client_id,
        "interval_start": format_ts(hour.start),
        "interval_end": format_ts(hour.end),
        "format": fields.get("format"),
        "compression": fields.get("compression"),
        "encryption": fields.get("encryption"),
        "row_count": sum(int(e["rows"]) for e in entries),
        "files": entries,
        "generated_at": format_ts(generated_at or datetime.now(UTC)),
    }
    _check_options(manifest)
    return manifest


def dump_manifest(manifest: Mapping[str, Any]) -> bytes:
    """Validate a manifest and serialize it to the bytes stored in ``_manifest.json``.

    :param manifest: a dict from :func:`build_manifest` (or an edited one).
    :raises ManifestError: the manifest does not validate.
    """
    validate_manifest(manifest)
    return manifest_bytes(manifest)


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Serialize a manifest as ``_manifest.json`` holds it, without validating it.

    JSON indented by 2, non-ASCII kept (UTF-8), fields in the dict's order, a final
    newline. For manifests this writer did not produce (absolute ``files[].key``
    of older writers) and that must be rewritten as they are.

    :param manifest: the manifest dict.
    """
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_manifest(data: bytes, *, validate: bool = True) -> dict[str, Any]:
    """Parse (and by default validate) the bytes of a ``_manifest.json``.

    :param data: the object's bytes.
    :param validate: check every field (:func:`validate_manifest`); with ``False``
        only require a JSON object (to edit manifests of other writers as they are).
    :raises ManifestError: not JSON, not an object, or (``validate``) a field is
        missing or wrong (names it).
    """
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
    if validate:
        validate_manifest(manifest)
    elif not isinstance(manifest, dict):
        raise ManifestError("manifest is not a JSON object")
    return manifest


def file_entries(manifest: Mapping[str, Any], manifest_key: str) -> dict[str, dict[str, Any]]:
    """Map the full object key of every ``files[]`` entry to the entry itself (not a copy).

    Keys are resolved with :func:`resolve_key` (relative, bucket-absolute or
    ``s3://`` keys alike); a missing ``files`` or ``key`` is tolerated.

    :param manifest: a parsed manifest (:func:`read_manifest`, maybe not validated).
    :param manifest_key: the key of the ``_manifest.json`` object.
    """
    return {resolve_key(manifest_key, str(e.get("key", ""))): e for e in manifest.get("files", [])}


def update_file_entry(
    manifest: MutableMapping[str, Any], entry: MutableMapping[str, Any], info: ExportedFile
) -> bool:
    """Make ``entry`` (one of ``manifest["files"]``) describe the object ``info`` describes.

    Sets the entry's ``rows``, ``bytes`` and ``sha256`` (its ``key``, as written,
    and any other field stay) and recomputes the manifest's ``row_count``. An
    entry that already has ``info``'s ``bytes`` and ``sha256`` is left alone.

    :param manifest: the manifest holding ``entry``.
    :param entry: the ``files[]`` entry of the object (see :func:`file_entries`).
    :param info: the object as it is now (its ``key`` is not used).
    :return: whether the manifest changed.
    """
    if entry.get("sha256") == info.sha256 and entry.get("bytes") == info.bytes:
        return False
    entry["rows"] = info.rows
    entry["bytes"] = info.bytes
    entry["sha256"] = info.sha256
    manifest["row_count"] = sum(int(e.get("rows") or 0) for e in manifest.get("files", []))
    return True


def validate_manifest(manifest: Any) -> None:
    """Check the structure of a manifest dict.

    :param manifest: the parsed manifest.
    :raises ManifestError: naming the first field at fault.
    """
    if not isinstance(manifest, Mapping):
        raise ManifestError("manifest is not a JSON object")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise ManifestError(f"manifest misses field(s) {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ManifestError(
            f"manifest format_version {manifest['format_version']!r} is not supported (expected 1)"
        )
    start = parse_ts(manifest["interval_start"], field="interval_start")
    end = parse_ts(manifest["interval_end"], field="interval_end")
    if end <= start:
        raise ManifestError("manifest interval_end is not after interval_start")
    files = manifest["files"]
    if not isinstance(files, list):
        raise ManifestError("manifest field 'files' is not a list")
    for i, entry in enumerate(files):
        _check_file_entry(entry, i)
    _check_options(manifest)
    total = sum(int(e["rows"]) for e in files)
    if not isinstance(manifest["row_count"], int) or manifest["row_count"] != total:
        raise ManifestError(f"manifest row_count {manifest['row_count']!r} != sum of files[].rows {total}")


def _check_file_entry(entry: Any, index: int) -> None:
    """Check one ``files[]`` entry of a manifest.

    :param entry: the entry.
    :param index: its position, for the message.
    :raises ManifestError: naming the entry and the field at fault.
    """
    if not isinstance(entry, Mapping):
        raise ManifestError(f"manifest files[{index}] is not an object")
    for k in _FILE_KEYS:
        if k not in entry:
            raise ManifestError(f"manifest files[{index}] misses {k!r}")
    key = entry["key"]
    if not isinstance(key, str) or not key or "/" in key or key in {".", ".."}:
        raise ManifestError(
            f"manifest files[{index}].key {key!r} is not a file name relative to the manifest"
        )
    for k in ("rows", "bytes"):
        if not isinstance(entry[k], int) or isinstance(entry[k], bool) or entry[k] < 0:
            raise ManifestError(f"manifest files[{index}].{k} {entry[k]!r} is not a non-negative integer")
    sha = entry["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"manifest files[{index}].sha256 {sha!r} is not 64 lower-case hex digits")
    if "content_type" in entry and (not isinstance(entry["content_type"], str) or not entry["content_type"]):
        raise ManifestError(f"manifest files[{index}].content_type {entry['content_type']!r} is not a text")


def _check_options(manifest: Mapping[str, Any]) -> None:
    """Check the export option fields of a manifest, when it has them (older writers' lack them).

    ``format`` and ``compression`` must be a valid pair, ``encryption`` an object with
    ``sse`` (``none``, ``AES256``, ``aws:kms``; ``kms_key_id`` with ``aws:kms`` only), and
    every ``files[].key`` must end as the format requires (``.parquet``, ``.jsonl.gz``...)
    with the matching ``content_type``.

    :param manifest: the manifest.
    :raises ManifestError: naming the field at fault.
    """
    if not any(k in manifest for k in ("format", "compression", "encryption")):
        return
    fmt, compression = manifest.get("format"), manifest.get("compression")
    if fmt not in COMPRESSIONS:
        raise ManifestError(f"manifest format {fmt!r} is not one of {sorted(COMPRESSIONS)}")
    if compression not in COMPRESSIONS[fmt]:
        raise ManifestError(f"manifest compression {compression!r} is not valid with format {fmt!r}")
    encryption = manifest.get("encryption")
    if not isinstance(encryption, Mapping) or encryption.get("sse") not in ("none", *SSE_ALGORITHMS):
        raise ManifestError(f"manifest encryption {encryption!r} is not an object with a valid 'sse'")
    key_id = encryption.get("kms_key_id")
    if encryption["sse"] == "aws:kms" and not (isinstance(key_id, str) and KMS_KEY_ID_RE.fullmatch(key_id)):
        raise ManifestError(f"manifest encryption.kms_key_id {key_id!r} is not a KMS key id")
    if encryption["sse"] != "aws:kms" and "kms_key_id" in encryption:
        raise ManifestError("manifest encryption.kms_key_id is only allowed with sse 'aws:kms'")
    extension, content_type = FILE_TYPES[(fmt, compression)]
    for i, entry in enumerate(manifest.get("files") or []):
        if not str(entry.get("key", "")).endswith(extension):
            raise ManifestError(
                f"manifest files[{i}].key {entry.get('key')!r} does not end with {extension!r} "
                f"(format {fmt!r}, compression {compression!r})"
            )
        if entry.get("content_type", content_type) != content_type:
            raise ManifestError(
                f"manifest files[{i}].content_type {entry['content_type']!r} is not {content_type!r}"
            )


def resolve_key(manifest_key: str, file_key: str) -> str:
    """Return the full object key of ``files[].key`` given the manifest's own key.

    This writer stores plain file names (relative to the manifest's folder); keys
    absolute in the bucket (``acme/dt=.../x.parquet``) and ``s3://bucket/key`` URIs
    are accepted too, so manifests written by other tools resolve the same way.

    :param manifest_key: key of the ``_manifest.json`` (``acme/dt=.../hour=03/_manifest.json``).
    :param file_key: a ``files[].key`` value.
    """
    folder = posixpath.dirname(manifest_key)
    if file_key.startswith("s3://"):
        parts = file_key.split("/", 3)
        return parts[3] if len(parts) == 4 else ""
    if folder and file_key.startswith(folder + "/"):
        return file_key
    if "/" in file_key and file_key.split("/", 1)[0] == manifest_key.split("/", 1)[0]:
        return file_key
    return posixpath.join(folder, file_key) if folder else file_key
