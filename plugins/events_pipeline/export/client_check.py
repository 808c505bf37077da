"""Check a client before its first export: its row, options, domains, connection, bucket and keys.

The ``events_client_check`` DAG (manual; form fields ``client_id`` and
``write_test_object``) calls :func:`run_client_check`. Every check gives one
:class:`Finding`, logged as one line as soon as it is known::

    client_check client=acme check=test_object status=ok: PutObject s3://acme-data/events/_events_client_check/...

Checks, in order:

- ``client``: the ``clients`` row (active or not, privacy, retention, published hours so far);
- ``options``: format, compression, server-side encryption, part bounds (validated as the export does);
- ``isolation``: id, bucket and prefix rules, no overlap with another client's current or
  earlier space, neither the backup nor the landing bucket: exactly the export's own check
  (``client_hour.check_client_destination``);
- ``landing_bucket``: the bucket is not the landing bucket (Variable ``events_landing_bucket``),
  reported on its own line;
- ``domains``: the client's domains, and the events seen for each in the last 24 hours;
- ``connection``: ``export_conn_id`` (NULL: ``aws_default``) exists and is an AWS connection;
- ``test_object``: a small object written into the client's prefix with the export's SSE
  arguments; only the PutObject's own answer is used (no Get, Head or List needed);
- ``delete_test_object``: whether DeleteObject is allowed (reported, never a failure);
- ``export_permissions``: HeadBucket and ListBucket, which ``events_export`` uses today
  (reported, never a failure; a missing bucket is one);
- ``next_export``: the exact keys of the next hour's parts and manifest in both buckets.

A check with status ``fail`` fails the task at the end, naming every failed check
(``warn`` and ``info`` do not). No test object is written when the isolation or landing
checks fail: it would land in someone else's space.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from events_pipeline.common.db import as_dict, as_dicts, connect, load_sql
from events_pipeline.common.errors import PipelineError, SettingError
from events_pipeline.common.intervals import HourInterval, floor_hour
from events_pipeline.common.run_params import ParamError
from events_pipeline.common.s3 import ACCESS_DENIED, AWS_CONN_HOW, NO_SUCH_BUCKET, error_code, s3_client
from events_pipeline.common.settings import (
    AWS_CONN_ID,
    EVENTS_DB_CONN_ID,
    VAR_BACKUP_BUCKET,
    VAR_LANDING_BUCKET,
    get_setting,
    require_connection,
)
from events_pipeline.export.formats import ExportOptions, ExportOptionsError
from events_pipeline.export.keys import (
    CLIENT_ID_RE,
    MANIFEST_NAME,
    ExportLocation,
    TenantIsolationError,
    backup_location,
    check_not_landing_bucket,
    client_location,
    validate_bucket,
)

log = logging.getLogger(__name__)

#: The DAG's form fields.
FIELD_CLIENT_ID = "client_id"
FIELD_WRITE_TEST_OBJECT = "write_test_object"
#: How far back the ``domains`` check looks for events.
DOMAIN_LOOKBACK = timedelta(hours=24)
#: Folder (inside the client's prefix) of the test objects; never an hour's folder.
TEST_OBJECT_FOLDER = "_events_client_check"

OK, INFO, WARN, FAIL, SKIP = "ok", "info", "warn", "fail", "skip"
_LEVELS = {
    OK: logging.INFO,
    INFO: logging.INFO,
    SKIP: logging.INFO,
    WARN: logging.WARNING,
    FAIL: logging.ERROR,
}


class ClientCheckError(PipelineError, AirflowFailException):
    """One or more checks of a client failed; the message names each. Not retried."""


@dataclass(frozen=True)
class Finding:
    """The result of one check.

    :param check: the check's name (``test_object``...).
    :param status: ``ok``, ``info``, ``warn``, ``fail`` or ``skip``.
    :param message: what was found, naming client, bucket, key and setting where they matter.
    """

    check: str
    status: str
    message: str

    def line(self, client_id: str) -> str:
        """Return the finding as its one log line.

        :param client_id: the checked client.
        """
        return f"client_check client={client_id} check={self.check} status={self.status}: {self.message}"


def form_client_id(params: Mapping[str, Any] | None) -> str:
    """Return the form's client id, trimmed; fail naming the field when it is empty or malformed.

    :param params: the run's params (``context["params"]``).
    :raises ParamError: naming the field.
    """
    value = (params or {}).get(FIELD_CLIENT_ID)
    if not isinstance(value, str) or not value.strip():
        raise ParamError(f"form field {FIELD_CLIENT_ID!r} is required: the id of a row of clients")
    value = value.strip()
    if not CLIENT_ID_RE.fullmatch(value):
        raise ParamError(
            f"form field {FIELD_CLIENT_ID!r} = {value!r} is not a client id "
            f"(it must match {CLIENT_ID_RE.pattern})"
        )
    return value


def form_write_test_object(params: Mapping[str, Any] | None) -> bool:
    """Return the form's "write a test object" choice (default true).

    :param params: the run's params.
    :raises ParamError: the value is not a boolean, naming the field.
    """
    value = (params or {}).get(FIELD_WRITE_TEST_OBJECT, True)
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ParamError(f"form field {FIELD_WRITE_TEST_OBJECT!r} = {value!r} is not true or false")
    return value


def unknown_client_error(client_id: str, known: list[str]) -> ParamError:
    """Return the error for a client id that is not in ``clients``, suggesting close ids.

    :param client_id: the id typed into the form.
    :param known: every client id.
    """
    close = difflib.get_close_matches(client_id, known, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return ParamError(f"form field {FIELD_CLIENT_ID!r} = {client_id!r}: no such client in clients{hint}")


def utc_text(value: datetime) -> str:
    """Return an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (the session's time zone may differ).

    :param value: an aware datetime (psycopg gives them in the session's time zone).
    """
    return f"{value.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def planned_parts(pending_rows: int, part_max_rows: int) -> int:
    """Return the fewest parts the next export writes for ``pending_rows`` rows (0: manifest only).

    The byte bound may close parts earlier, so there may be more.

    :param pending_rows: rows the export would take now.
    :param part_max_rows: the client's row bound of a part.
    """
    return math.ceil(pending_rows / part_max_rows) if pending_rows > 0 else 0


def next_export_keys(
    options: ExportOptions, target: ExportLocation, backup: ExportLocation, parts: int
) -> tuple[list[str], list[str]]:
    """Return the ``s3://`` URIs the next export writes: ``(client bucket, backup bucket)``.

    :param options: the client's export options (file names).
    :param target: the hour's folder in the client bucket.
    :param backup: the hour's folder in the backup bucket.
    :param parts: the number of data parts (see :func:`planned_parts`).
    """
    names = [options.part_name(n) for n in range(parts)] + [MANIFEST_NAME]
    return [target.uri(n) for n in names], [backup.uri(n) for n in names]


def check_object_key(prefix: str, now: datetime) -> str:
    """Return the key of the test object: ``<prefix>/_events_client_check/<UTC time>.json``.

    :param prefix: the client's ``export_prefix``.
    :param now: the time of the check (makes the key unique per run).
    """
    return f"{prefix}/{TEST_OBJECT_FOLDER}/{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}.json"


def run_client_check(
    params: Mapping[str, Any] | None,
    *,
    run_id: str | None = None,
    conn_id: str = EVENTS_DB_CONN_ID,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Check one client (the form's ``client_id``) and log one line per finding.

    :param params: the run's params: ``client_id`` (required) and ``write_test_object`` (default true).
    :param run_id: the Airflow run id (written into the test object).
    :param conn_id: Airflow connection of the events database.
    :param now: the time of the check (default: now).
    :return: ``{"client_id", "findings": [{"check", "status", "message"}...], "failed": [check...]}``.
    :raises ParamError: a form field is wrong, or names no client (names the field).
    :raises ClientCheckError: at least one check failed (names every failed check).
    """
    client_id = form_client_id(params)
    write = form_write_test_object(params)
    with connect(conn_id, autocommit=True) as conn:
        row = as_dict(conn.execute(load_sql("export/client_check_row.sql"), {"client_id": client_id}))
        if row is None:
            known = [r[0] for r in conn.execute(load_sql("export/client_ids.sql")).fetchall()]
            raise unknown_client_error(client_id, known)
        checker = _ClientChecker(conn, row, write, run_id, now or datetime.now(UTC))
        findings = checker.run()
    failed = [f for f in findings if f.status == FAIL]
    if failed:
        raise ClientCheckError(
            f"client_check client={client_id}: {len(failed)} check(s) failed: "
            + "; ".join(f"{f.check}: {f.message}" for f in failed)
        )
    log.info("client_check client=%s: every check passed (%d findings)", client_id, len(findings))
    return {"client_id": client_id, "findings": [asdict(f) for f in findings], "failed": []}


class _ClientChecker:
    """Runs the checks of one client in order, each adding a :class:`Finding` (and logging it).

    :param conn: an autocommit connection to the events database.
    :param row: the client's row (``client_check_row.sql``).
    :param write: write (and try to delete) a test object.
    :param run_id: the Airflow run id.
    :param now: the time of the check.
    """

    def __init__(
        self,
        conn: Any,
        row: dict[str, Any],
        write: bool,
        run_id: str | None,
        now: datetime,
    ) -> None:
        self.conn = conn
        self.row = row
        self.client_id: str = row["client_id"]
        self.bucket: str = row["export_bucket"]
        self.prefix: str = row["export_prefix"]
        self.conn_id: str = row["export_conn_id"] or AWS_CONN_ID
        self.write = write
        self.run_id = run_id
        self.now = now
        self.findings: list[Finding] = []
        self.options: ExportOptions | None = None
        self.part_max_rows: int | None = None  # the client's row bound of a part (options check)
        self.state: dict[str, Any] = {}  # pending rows and published hours (client check)
        self.space_ok = False  # id, bucket and prefix valid, no overlap, not landing/backup
        self.bucket_valid = False  # the bucket name can be sent to S3
        self.s3: Any = None

    def add(self, check: str, status: str, message: str) -> None:
        """Record a finding and log its line at once.

        :param check: the check's name.
        :param status: ``ok``, ``info``, ``warn``, ``fail`` or ``skip``.
        :param message: what was found.
        """
        finding = Finding(check, status, " ".join(str(message).split()))  # one line, whatever the cause
        self.findings.append(finding)
        log.log(_LEVELS[status], "%s", finding.line(self.client_id))

    def run(self) -> list[Finding]:
        """Run every check in order; return the findings."""
        self.check_client()
        self.check_options()
        isolation_ok = self.check_isolation()
        landing_ok = self.check_landing_bucket()
        self.space_ok = isolation_ok and landing_ok
        self.check_domains()
        self.check_connection()
        self.check_test_object()
        self.check_export_permissions()
        self.check_next_export()
        return self.findings

    @property
    def where(self) -> str:
        """The client's space and connection, as messages name them."""
        return f"s3://{self.bucket}/{self.prefix}/ through connection {self.conn_id!r}"

    def check_client(self) -> None:
        """``client``: the row as configured, and what was exported for it so far."""
        r = self.row
        state = as_dict(
            self.conn.execute(load_sql("export/client_export_state.sql"), {"client_id": self.client_id})
        )
        assert state is not None  # a SELECT without FROM: one row
        published = "never exported yet"
        if state["published_hours"]:
            last = state["last_published"]
            published = f"{state['published_hours']} published hour(s), the last {utc_text(last)}"
        text = (
            f"name={r['name']!r} active={r['active']} privacy_level={r['privacy_level']} "
            f"export_bucket={self.bucket!r} export_prefix={self.prefix!r} "
            f"export_conn_id={r['export_conn_id']!r} (uses {self.conn_id!r}) "
            f"retention_days={r['retention_days']} "
            f"created_at={utc_text(r['created_at'])}; {published}"
        )
        if r["active"]:
            self.add("client", OK, text)
        else:
            self.add("client", WARN, text + "; inactive: events_export skips it until clients.active is true")
        self.state = state

    def check_options(self) -> None:
        """``options``: the export options, validated as the export validates them."""
        try:
            self.options = ExportOptions.from_row(self.client_id, self.row)
        except ExportOptionsError as exc:
            self.add("options", FAIL, str(exc))
            return
        from events_pipeline.export.client_hour import part_settings

        try:
            settings = part_settings().with_options(self.options)
        except (SettingError, ValueError) as exc:
            self.add(
                "options", FAIL, f"{self.options.describe()}; the part bound Variables are invalid: {exc}"
            )
            return
        self.part_max_rows = settings.part_max_rows
        self.add(
            "options",
            OK,
            f"{self.options.describe()} -> parts close at {settings.part_max_rows} rows or "
            f"{settings.part_max_bytes} bytes",
        )

    def check_isolation(self) -> bool:
        """``isolation``: the export's own destination check (rules, other clients' spaces, buckets)."""
        from events_pipeline.export.client_hour import check_client_destination, load_client

        try:
            validate_bucket(self.bucket, what=f"client {self.client_id!r} export_bucket")
            self.bucket_valid = True
            backup_bucket = get_setting(VAR_BACKUP_BUCKET)
            client = load_client(self.conn, self.client_id)
            assert client is not None  # the row was just read
            check_client_destination(self.conn, client, backup_bucket)
        except (TenantIsolationError, SettingError) as exc:
            self.add("isolation", FAIL, str(exc))
            return False
        spaces = self.conn.execute(load_sql("export/client_spaces.sql"), {"bucket": self.bucket}).fetchall()
        shared = sorted({r[0] for r in spaces if r[0] != self.client_id})
        note = f"; bucket shared with {', '.join(shared)} (disjoint prefixes)" if shared else ""
        self.add(
            "isolation",
            OK,
            f"s3://{self.bucket}/{self.prefix}/ is valid, overlaps no other client's current or earlier "
            f"space and is not the backup bucket {backup_bucket!r}{note}",
        )
        return True

    def check_landing_bucket(self) -> bool:
        """``landing_bucket``: the client bucket is not the landing bucket."""
        try:
            landing = get_setting(VAR_LANDING_BUCKET)
            check_not_landing_bucket(self.client_id, self.bucket, landing)
        except (TenantIsolationError, SettingError) as exc:
            self.add("landing_bucket", FAIL, str(exc))
            return False
        self.add("landing_bucket", OK, f"export_bucket {self.bucket!r} is not the landing bucket {landing!r}")
        return True

    def check_domains(self) -> None:
        """``domains``: the client's domains and the events seen for each recently (warnings only)."""
        since = self.now - DOMAIN_LOOKBACK
        rows = as_dicts(
            self.conn.execute(
                load_sql("export/client_domain_activity.sql"), {"client_id": self.client_id, "since": since}
            )
        )
        if not rows:
            self.add(
                "domains",
                WARN,
                "no domain in client_domains: no event can be attributed to this client, so its exports "
                "stay empty (add its domains, or let the attribution sync add them)",
            )
            return
        parts, silent = [], []
        for r in rows:
            if r["attributed"] or r["unattributed"]:
                parts.append(
                    f"{r['domain']}: {r['attributed']} attributed + {r['unattributed']} unattributed, "
                    f"last {utc_text(r['last_seen'])}"
                )
            else:
                parts.append(f"{r['domain']}: none")
                silent.append(r["domain"])
        status = WARN if silent else OK
        hint = (
            f"; no events since {utc_text(since)} for {', '.join(silent)} (tracking not live yet, "
            "or a typo in the domain?)"
            if silent
            else ""
        )
        self.add("domains", status, f"events in the last 24 h per domain: {'; '.join(parts)}{hint}")

    def check_connection(self) -> None:
        """``connection``: the client's AWS connection exists; describe it without secrets."""
        try:
            conn = require_connection(self.conn_id, AWS_CONN_HOW)
            self.s3 = s3_client(self.conn_id)
        except SettingError as exc:
            self.add("connection", FAIL, f"client {self.client_id!r} (clients.export_conn_id): {exc}")
            return
        extra = conn.extra_dejson or {}
        creds = "access key in the connection" if conn.login else "the default AWS credential chain"
        if extra.get("role_arn"):
            creds += f", assuming role {extra['role_arn']}"
        text = (
            f"connection {self.conn_id!r} resolves: type {conn.conn_type!r}, endpoint "
            f"{extra.get('endpoint_url') or 'AWS'}, region {extra.get('region_name') or 'default'}, {creds}"
        )
        self.add("connection", OK if conn.conn_type == "aws" else WARN, text)

    def _skip_reason(self) -> str | None:
        """Why no S3 request may be sent for this client now (``None``: go ahead)."""
        if not self.bucket_valid:
            return "export_bucket is not a valid bucket name (see isolation)"
        if self.s3 is None:
            return "no S3 connection (see connection)"
        return None

    def check_test_object(self) -> None:
        """``test_object`` and ``delete_test_object``: PutObject with the export's SSE, then DeleteObject."""
        reason = self._skip_reason()
        if not self.write:
            reason = f"form field {FIELD_WRITE_TEST_OBJECT!r} is false"
        elif reason is None and not self.space_ok:
            reason = "the space failed the isolation or landing check: nothing is written there"
        elif reason is None and self.options is None:
            reason = "the export options are invalid (see options)"
        if reason is not None:
            self.add("test_object", SKIP, f"no test object written: {reason}")
            self.add("delete_test_object", SKIP, "no test object to delete")
            return
        assert self.options is not None
        key = check_object_key(self.prefix, self.now)
        if self._put_test_object(key):
            self._delete_test_object(key)
        else:
            self.add("delete_test_object", SKIP, "no test object was written")

    def _put_test_object(self, key: str) -> bool:
        """Write the test object; judge only from the PutObject answer. Return whether it was written.

        :param key: the test object's key.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        assert self.options is not None
        body = json.dumps(
            {
                "written_by": "events_client_check",
                "client_id": self.client_id,
                "run_id": self.run_id,
                "written_at": self.now.isoformat(),
                "note": "safe to delete: a check of the export's write access",
            }
        ).encode()
        sse = self.options.sse_args()
        uri = f"s3://{self.bucket}/{key}"
        try:
            answer = self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **sse
            )
        except ClientError as exc:
            self.add("test_object", FAIL, self._put_error(exc, uri, sse))
            return False
        except BotoCoreError as exc:
            self.add("test_object", FAIL, f"PutObject {uri} through connection {self.conn_id!r}: {exc}")
            return False
        applied = answer.get("ServerSideEncryption")
        key_id = answer.get("SSEKMSKeyId")
        requested = self.options.sse
        sse_text = f"SSE requested {requested or 'none'}, applied {applied or 'none'}" + (
            f" with key {key_id}" if key_id else ""
        )
        text = (
            f"PutObject {uri} allowed (ETag {answer.get('ETag')}, {sse_text}) "
            f"through connection {self.conn_id!r}"
        )
        if requested and applied != requested:
            self.add(
                "test_object",
                FAIL,
                f"{text}: the bucket did not apply the client's export_sse {requested!r}; the export's files "
                "would not be encrypted as configured",
            )
        elif (
            requested == "aws:kms"
            and str(self.options.sse_kms_key_id).startswith("arn:")
            and key_id
            and (key_id != self.options.sse_kms_key_id)
        ):
            self.add("test_object", WARN, f"{text}: S3 used another KMS key than export_sse_kms_key_id")
        else:
            self.add("test_object", OK, text)
        return True

    def _put_error(self, exc: Exception, uri: str, sse: dict[str, str]) -> str:
        """Return the message of a refused PutObject, naming client, bucket, key, connection and setting.

        :param exc: the botocore ``ClientError``.
        :param uri: the test object's ``s3://`` URI.
        :param sse: the SSE arguments sent.
        """
        code = error_code(exc)
        via = f"through connection {self.conn_id!r}"
        if code == "NoSuchBucket":
            return (
                f"S3 bucket {self.bucket!r} (client {self.client_id!r} export_bucket) does not exist "
                f"(PutObject {uri} {via})"
            )
        if code in ACCESS_DENIED:
            kms = (
                f" and kms:GenerateDataKey on key {self.options.sse_kms_key_id!r} (export_sse_kms_key_id)"
                if self.options is not None and self.options.sse == "aws:kms"
                else ""
            )
            return (
                f"PutObject {uri} denied {via} (client {self.client_id!r}): the credentials need "
                f"s3:PutObject on arn:aws:s3:::{self.bucket}/{self.prefix}/*{kms}"
            )
        message = getattr(exc, "response", {}).get("Error", {}).get("Message", str(exc))
        sent = f" with {sse}" if sse else ""
        return f"PutObject {uri}{sent} {via} failed: {code or type(exc).__name__}: {message}"

    def _delete_test_object(self, key: str) -> None:
        """Try to delete the test object; a refusal is reported, not a failure.

        :param key: the test object's key.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        uri = f"s3://{self.bucket}/{key}"
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            code = error_code(exc) or type(exc).__name__
            self.add(
                "delete_test_object",
                WARN,
                f"DeleteObject {uri} refused ({code}) through connection {self.conn_id!r}: the test object "
                "stays (delete it by hand); events_export deletes a failed attempt's parts and stale parts "
                "with DeleteObject, which then fails",
            )
            return
        self.add("delete_test_object", OK, f"DeleteObject {uri} allowed: the test object is gone")

    def check_export_permissions(self) -> None:
        """``export_permissions``: HeadBucket and ListBucket as events_export uses them (reported only)."""
        from botocore.exceptions import BotoCoreError, ClientError

        reason = self._skip_reason()
        if reason is not None:
            self.add("export_permissions", SKIP, f"not probed: {reason}")
            return
        denied, missing = [], False
        probes = (
            ("HeadBucket", lambda: self.s3.head_bucket(Bucket=self.bucket)),
            (
                "ListBucket",
                lambda: self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/", MaxKeys=1),
            ),
        )
        for name, call in probes:
            try:
                call()
            except ClientError as exc:
                code = error_code(exc)
                if code == "NoSuchBucket" or (name == "HeadBucket" and code in NO_SUCH_BUCKET):
                    missing = True
                    break
                denied.append(f"{name} ({code})")
            except BotoCoreError as exc:
                denied.append(f"{name} ({type(exc).__name__})")
        if missing:
            self.add(
                "export_permissions",
                FAIL,
                f"S3 bucket {self.bucket!r} (client {self.client_id!r} export_bucket) does not exist "
                f"(HeadBucket through connection {self.conn_id!r})",
            )
        elif denied:
            self.add(
                "export_permissions",
                WARN,
                f"{', '.join(denied)} refused on {self.where}: events_export checks the bucket with "
                "HeadBucket before every hour and lists the hour's folder to remove stale parts, so its "
                "exports fail until s3:ListBucket is granted (PutObject alone is enough for this check)",
            )
        else:
            self.add("export_permissions", OK, f"HeadBucket and ListBucket allowed on {self.where}")

    def check_next_export(self) -> None:
        """``next_export``: the exact keys the next hour's export writes, in both buckets."""
        if self.options is None or self.part_max_rows is None or not self.space_ok:
            self.add("next_export", SKIP, "no keys: the options or the client's space failed their checks")
            return
        hour = HourInterval(floor_hour(self.now))
        target = client_location(self.client_id, self.bucket, self.prefix, hour)
        backup = backup_location(self.client_id, get_setting(VAR_BACKUP_BUCKET), hour)
        pending = int(self.state["pending_rows"])
        parts = planned_parts(pending, self.part_max_rows)
        client_uris, backup_uris = next_export_keys(self.options, target, backup, parts)
        oldest = self.state["oldest_pending"]
        rows = (
            f"{pending} pending row(s) now (oldest created {utc_text(oldest)}) plus those arriving "
            f"before {hour.end:%H:%MZ}"
            if pending
            else f"no pending row now (an empty hour writes only the manifest; rows arriving before "
            f"{hour.end:%H:%MZ} are taken too)"
        )
        more = " (more parts if the byte bound closes them earlier)" if parts else ""
        sse = self.options.sse or "none"
        self.add(
            "next_export",
            INFO if self.row["active"] else WARN,
            f"hour {hour} (run at {hour.end:%Y-%m-%dT%H:%MZ}{'' if self.row['active'] else ', once active'}) "
            f"takes {rows} -> client bucket: {', '.join(client_uris)}{more}; "
            f"backup: {', '.join(backup_uris)}; "
            f"Content-Type {self.options.content_type}, SSE {sse} on the client bucket's objects",
        )
