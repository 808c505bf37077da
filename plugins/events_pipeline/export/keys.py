"""Object keys of exports, and the validation that keeps tenants apart.

Client bucket: ``s3://{export_bucket}/{export_prefix}/dt=YYYY-MM-DD/hour=HH/<file>``.
Backup bucket: ``s3://{backup_bucket}/{client_id}/dt=YYYY-MM-DD/hour=HH/<file>``.
Files are ``part-00000.parquet``, ``part-00001.parquet``... (or ``.jsonl``,
``.jsonl.gz``, ``.jsonl.zst`` for a client exporting JSON Lines) and ``_manifest.json``.
:func:`hour_of_folder` reads the hour back from either folder.

Every client id, prefix and bucket is validated here before it becomes part of
a key, so no configuration value can reach another client's folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from events_pipeline.common.errors import PipelineError
from events_pipeline.common.intervals import HourInterval

#: Same rule as the ``clients_client_id_format`` CHECK of migration 0001.
CLIENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: One prefix segment: starts with a letter or digit, then letters, digits, ``._-``.
PREFIX_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: S3 bucket naming rules (lower case, 3..63 chars, no ``..``).
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: Segment names the key layout itself uses (a prefix may not imitate them).
RESERVED_SEGMENT_RE = re.compile(r"^(dt|hour)(=|$)", re.IGNORECASE)
MAX_PREFIX_LEN = 512

MANIFEST_NAME = "_manifest.json"
#: File name endings of data parts, one per export format and compression (``export/formats.py``).
PART_EXTENSIONS = (".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst")
#: A data part of any format: ``part-NNNNN`` and one of :data:`PART_EXTENSIONS`.
PART_RE = re.compile(r"^part-(\d{5})(?:\.parquet|\.jsonl|\.jsonl\.gz|\.jsonl\.zst)$")
#: The last two segments of an hour's folder (``HourInterval.partition_path``).
HOUR_FOLDER_RE = re.compile(r"(?:^|/)dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/hour=([0-9]{2})$")


class TenantIsolationError(PipelineError):
    """A client's configuration would put its export outside its own space."""


def validate_client_id(client_id: str) -> str:
    """Return ``client_id`` if it is a valid client id, else raise.

    :param client_id: the id from ``clients.client_id``.
    :raises TenantIsolationError: naming the id and the rule it breaks.
    """
    if not isinstance(client_id, str) or not CLIENT_ID_RE.fullmatch(client_id):
        raise TenantIsolationError(
            f"client_id {client_id!r} is invalid: it must match {CLIENT_ID_RE.pattern} "
            "(lower-case letters, digits, '_' and '-', no '/', no '.')"
        )
    return client_id


def validate_prefix(prefix: str, *, client_id: str = "?") -> str:
    """Return ``prefix`` if it is a safe export prefix, else raise.

    Rules: not empty, no leading or trailing ``/``, no empty segment (``a//b``),
    no ``.`` or ``..`` segment, each segment ``[A-Za-z0-9][A-Za-z0-9._-]*``, no
    segment named like the layout's own ``dt=`` / ``hour=`` folders.

    :param prefix: ``clients.export_prefix``.
    :param client_id: the client it belongs to, for the message.
    :raises TenantIsolationError: naming the client, the prefix and the rule.
    """

    def fail(rule: str) -> TenantIsolationError:
        return TenantIsolationError(
            f"client {client_id!r}: export_prefix {prefix!r} is rejected ({rule}); fix clients.export_prefix"
        )

    if not isinstance(prefix, str) or not prefix:
        raise fail("empty prefix: exports would land at the bucket root")
    if len(prefix) > MAX_PREFIX_LEN:
        raise fail(f"longer than {MAX_PREFIX_LEN} characters")
    if prefix.startswith("/") or prefix.endswith("/"):
        raise fail("leading or trailing '/'")
    for segment in prefix.split("/"):
        if segment == "":
            raise fail("empty segment '//'")
        if segment in {".", ".."}:
            raise fail(f"relative segment {segment!r}")
        if RESERVED_SEGMENT_RE.match(segment):
            raise fail(f"segment {segment!r} imitates the dt=/hour= layout")
        if not PREFIX_SEGMENT_RE.fullmatch(segment):
            raise fail(
                f"segment {segment!r} has characters outside [A-Za-z0-9._-] or starts with one of '._-'"
            )
    return prefix


def validate_bucket(bucket: str, *, what: str) -> str:
    """Return ``bucket`` if it is a valid S3 bucket name, else raise.

    :param bucket: the bucket name.
    :param what: whose bucket it is, for the message (``client 'acme' export_bucket``).
    :raises TenantIsolationError: naming the bucket and its owner.
    """
    if not isinstance(bucket, str) or not BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise TenantIsolationError(f"{what} {bucket!r} is not a valid S3 bucket name")
    return bucket


def _segments(prefix: str) -> tuple[str, ...]:
    """Return the ``/``-separated segments of ``prefix``.

    :param prefix: an export prefix.
    """
    return tuple(prefix.split("/"))


@dataclass(frozen=True)
class ExportSpace:
    """A place a client's files are, or were, written to: a bucket and a prefix.

    :param client_id: the client.
    :param bucket: the bucket.
    :param prefix: the prefix (its hours are folders below it).
    :param since: when an export of this client first wrote into it (``export_spaces``);
        ``None`` when it never did (a client configured but not exported yet).
    :param current: ``True`` for the client's configured space now, ``False`` for one it
        used earlier (its objects are still there: retention never deletes objects).
    """

    client_id: str
    bucket: str
    prefix: str
    since: datetime | None = None
    current: bool = True

    def describe(self) -> str:
        """``client 'acme''s s3://bucket/prefix/`` (+ "earlier" / "since ..."), for messages."""
        where = f"client {self.client_id!r}'s {'' if self.current else 'earlier '}s3://{self.bucket}/{self.prefix}/"
        return f"{where} (exported into since {self.since:%Y-%m-%dT%H:%MZ})" if self.since else where


def _space(other: ExportSpace | tuple[str, str, str]) -> ExportSpace:
    """Return ``other`` as an :class:`ExportSpace` (a plain ``(client_id, bucket, prefix)`` is current).

    :param other: a space, or a ``(client_id, export_bucket, export_prefix)`` row.
    """
    return other if isinstance(other, ExportSpace) else ExportSpace(*other)


def check_no_overlap(
    client_id: str,
    bucket: str,
    prefix: str,
    others: Iterable[ExportSpace | tuple[str, str, str]],
    backup_bucket: str,
    *,
    since: datetime | None = None,
) -> None:
    """Fail when this client's export space overlaps another client's, or is the backup bucket.

    Two spaces overlap when they share a bucket and one prefix equals the other or
    is a folder above it (segment-wise: ``data`` contains ``data/b`` but not
    ``data-b``). Other clients' spaces are their configured ones and every one they
    exported into earlier (``export_spaces``: their objects stay there). Of two
    overlapping spaces, the one exported into first keeps exporting ("came first":
    it has a ``since`` and the other none or a later one). A client is refused when:

    - its space equals or lies inside another's, unless it came first: its files
      would land among the other client's (two configured spaces never exported to:
      the nested one is refused, equal ones both);
    - another client's space lies inside its own, that client exported there, and
      this client did not come first: its space would hold the other client's
      earlier objects.

    :param client_id: the client being exported.
    :param bucket: its ``export_bucket``.
    :param prefix: its validated ``export_prefix``.
    :param others: every other client's spaces (:class:`ExportSpace`, or
        ``(client_id, export_bucket, export_prefix)`` for a configured space never exported to).
    :param backup_bucket: the backup bucket (holds every client's data: never a client's bucket).
    :param since: when this client first exported into this space (``None``: never).
    :raises TenantIsolationError: naming both clients, the bucket and the prefixes.
    """
    if bucket == backup_bucket:
        raise TenantIsolationError(
            f"client {client_id!r}: export_bucket {bucket!r} is the backup bucket (Variable "
            "events_backup_bucket), which holds every client's exports; give the client its own bucket"
        )
    mine = _segments(prefix)
    for other in map(_space, others):
        if other.client_id == client_id or other.bucket != bucket:
            continue
        theirs = _segments(other.prefix or "")
        came_first = since is not None and (other.since is None or since < other.since)
        if mine[: len(theirs)] == theirs and not came_first:
            raise TenantIsolationError(
                f"client {client_id!r}: export space s3://{bucket}/{prefix}/ lies inside "
                f"{other.describe()} (same bucket, equal or nested prefix); "
                "give each client a disjoint prefix"
            )
        if theirs[: len(mine)] == mine and other.since is not None and not came_first:
            raise TenantIsolationError(
                f"client {client_id!r}: export space s3://{bucket}/{prefix}/ would hold "
                f"{other.describe()}, whose objects are already there (same bucket, nested prefix); "
                "give each client a disjoint prefix"
            )


def check_destination(
    client_id: str,
    export_bucket: str,
    export_prefix: str,
    *,
    backup_bucket: str,
    landing_bucket: str,
    others: Iterable[ExportSpace | tuple[str, str, str]] = (),
    since: datetime | None = None,
) -> None:
    """Check everything about where a client's exports go, before any key is built.

    The client id, bucket and prefix rules, then: the backup bucket is not the landing
    bucket, the client's bucket is neither the landing bucket nor the backup bucket,
    and its space overlaps no other client's (:func:`check_no_overlap`). Pure: the
    export calls it before every hour, the client check with the same values.

    :param client_id: ``clients.client_id``.
    :param export_bucket: ``clients.export_bucket``.
    :param export_prefix: ``clients.export_prefix``.
    :param backup_bucket: the Variable ``events_backup_bucket``.
    :param landing_bucket: the Variable ``events_landing_bucket``.
    :param others: every other client's spaces (see :func:`check_no_overlap`).
    :param since: when this client first exported into this space (``None``: never).
    :raises TenantIsolationError: naming the client, the setting at fault and the rule.
    """
    validate_client_id(client_id)
    validate_bucket(export_bucket, what=f"client {client_id!r} export_bucket")
    validate_prefix(export_prefix, client_id=client_id)
    validate_bucket(backup_bucket, what="Variable events_backup_bucket")
    if backup_bucket == landing_bucket:
        raise TenantIsolationError(
            f"client {client_id!r}: the backup bucket {backup_bucket!r} (Variable events_backup_bucket) is "
            "the landing bucket (Variable events_landing_bucket), which holds every client's raw input; "
            "give the backups their own bucket"
        )
    check_not_landing_bucket(client_id, export_bucket, landing_bucket)
    check_no_overlap(client_id, export_bucket, export_prefix, others, backup_bucket, since=since)


def check_not_landing_bucket(client_id: str, bucket: str, landing_bucket: str) -> None:
    """Fail when a client's export bucket is the landing bucket (Variable ``events_landing_bucket``).

    The landing bucket holds every client's raw input: exports written there would be
    readable by whoever reads the landing bucket, and ``incoming/`` is read as input.

    :param client_id: the client, for the message.
    :param bucket: the client's ``export_bucket``.
    :param landing_bucket: the value of the Variable ``events_landing_bucket``.
    :raises TenantIsolationError: naming the client, the bucket and the Variable.
    """
    if bucket == landing_bucket:
        raise TenantIsolationError(
            f"client {client_id!r}: export_bucket {bucket!r} is the landing bucket (Variable "
            "events_landing_bucket), which holds every client's raw input; give the client its own bucket"
        )


def part_name(number: int, extension: str = ".parquet") -> str:
    """Return the file name of data part ``number`` (``part-00000.parquet``).

    :param number: the 0-based part number.
    :param extension: the file name ending of the client's format, one of :data:`PART_EXTENSIONS`.
    """
    if not 0 <= number < 100_000:
        raise ValueError(f"part number {number} out of range 0..99999")
    if extension not in PART_EXTENSIONS:
        raise ValueError(f"part extension {extension!r} is not one of {PART_EXTENSIONS}")
    return f"part-{number:05d}{extension}"


@dataclass(frozen=True)
class ExportLocation:
    """Where one client's hour goes: a bucket and the folder inside it.

    :param bucket: the S3 bucket.
    :param folder: the key prefix of the hour, without trailing ``/``.
    """

    bucket: str
    folder: str

    def key(self, name: str) -> str:
        """Return the full key of file ``name`` in this hour's folder.

        :param name: a file name (``part-00000.parquet`` or ``_manifest.json``), no ``/``.
        """
        if not name or "/" in name or name in {".", ".."}:
            raise TenantIsolationError(f"file name {name!r} is not a plain file name")
        return f"{self.folder}/{name}"

    @property
    def manifest_key(self) -> str:
        """The key of ``_manifest.json``."""
        return self.key(MANIFEST_NAME)

    def uri(self, name: str) -> str:
        """Return ``s3://bucket/key`` of file ``name``.

        :param name: a file name in this folder.
        """
        return f"s3://{self.bucket}/{self.key(name)}"


def client_location(client_id: str, bucket: str, prefix: str, hour: HourInterval) -> ExportLocation:
    """Return the client-bucket folder of ``hour`` for a client, after validating everything.

    :param client_id: the client id.
    :param bucket: the client's ``export_bucket``.
    :param prefix: the client's ``export_prefix``.
    :param hour: the exported hour.
    :raises TenantIsolationError: an invalid id, bucket or prefix.
    """
    validate_client_id(client_id)
    validate_bucket(bucket, what=f"client {client_id!r} export_bucket")
    validate_prefix(prefix, client_id=client_id)
    return ExportLocation(bucket, f"{prefix}/{hour.partition_path}")


def backup_prefix(client_id: str) -> str:
    """Return the key prefix holding every hour of a client in the backup bucket (``acme/``).

    :param client_id: the client id (validated: it is the top folder).
    :raises TenantIsolationError: an invalid id.
    """
    return f"{validate_client_id(client_id)}/"


def backup_location(client_id: str, backup_bucket: str, hour: HourInterval) -> ExportLocation:
    """Return the backup-bucket folder of ``hour`` for a client.

    :param client_id: the client id (validated: it is the top folder).
    :param backup_bucket: the backup bucket (Variable ``events_backup_bucket``).
    :param hour: the exported hour.
    :raises TenantIsolationError: an invalid id or bucket.
    """
    prefix = backup_prefix(client_id)
    validate_bucket(backup_bucket, what="Variable events_backup_bucket")
    return ExportLocation(backup_bucket, f"{prefix}{hour.partition_path}")


def hour_of_folder(folder: str) -> HourInterval:
    """Return the hour an export folder holds, read from its ``dt=YYYY-MM-DD/hour=HH`` end.

    The inverse of the folders of :func:`client_location` and :func:`backup_location`
    (whatever comes before those two segments is not checked here).

    :param folder: a folder key without trailing ``/`` (``acme/dt=2026-11-27/hour=03``).
    :raises ValueError: the folder does not end with a valid ``dt=YYYY-MM-DD/hour=HH``.
    """
    match = HOUR_FOLDER_RE.search(folder)
    try:
        if match is None:
            raise ValueError("no dt=YYYY-MM-DD/hour=HH at its end")
        start = datetime.strptime(f"{match[1]} {match[2]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"folder {folder!r} is not an export hour's folder: {exc}") from exc
    return HourInterval(start)
