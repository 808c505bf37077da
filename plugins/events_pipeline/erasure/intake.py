"""Filing erasure requests from the trigger form of ``events_gdpr_erasure`` (Airflow Params).

The form has four fields: ``client_id``, ``visitor_id``, ``requested_by`` (who asked:
the person, the client's DPO...) and ``reference`` (a ticket or letter reference).
Airflow checks each field's JSON schema in the form and at trigger time (format,
lengths); the rules that need the database or several fields are checked here, at
the start of the run, and fail it at once naming the field: a typo in the client id
is an error, never a request carried out over nothing.

An empty form (every scheduled run, a manual trigger without values) files nothing:
the run carries out the requests already pending. A filed request is carried out by
the same run (the next task). Filing is idempotent per run: a retried task finds the
request its first try filed (``filed_by_run_id``).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from events_pipeline.common.db import connect, load_sql
from events_pipeline.common.run_params import ParamError
from events_pipeline.export.keys import CLIENT_ID_RE
from events_pipeline.privacy.visitor_digest import visitor_digest

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

CLIENT_FIELD = "client_id"
VISITOR_FIELD = "visitor_id"
REQUESTED_BY_FIELD = "requested_by"
REFERENCE_FIELD = "reference"
WHOLE_BACKUP_FIELD = "whole_backup_history"
FORM_FIELDS = (CLIENT_FIELD, VISITOR_FIELD, REQUESTED_BY_FIELD, REFERENCE_FIELD)
#: Longest visitor id (``events_log.visitor_id`` is ``varchar(100)``).
MAX_VISITOR_LEN = 100
#: Longest ``requested_by`` / ``reference``.
MAX_TEXT_LEN = 200


@dataclass(frozen=True)
class FormRequest:
    """A request as typed into the form, checked field by field.

    :param client_id: the client.
    :param visitor_id: the visitor to erase.
    :param requested_by: who asked.
    :param reference: the request's reference (may be empty).
    :param whole_backup: also read every backup folder of the client (events older than its retention
        in hours exported before the backup visitor index existed).
    """

    client_id: str
    visitor_id: str
    requested_by: str
    reference: str | None
    whole_backup: bool = False


def _text(params: Mapping[str, Any], name: str) -> str | None:
    """Return the form's ``name`` stripped, or None when empty.

    :param params: the run's params.
    :param name: the field.
    :raises ParamError: the value is not text.
    """
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParamError(f"form field {name!r} = {value!r} is not text")
    value = value.strip()
    return value or None


def read_form(params: Mapping[str, Any] | None) -> FormRequest | None:
    """Return the request the form describes, None when the form is empty.

    :param params: the run's params (``context["params"]``).
    :raises ParamError: naming the field: a required field empty, a client id that is
        not a client id, a value too long.
    """
    params = params or {}
    values = {name: _text(params, name) for name in FORM_FIELDS}
    if not any(values.values()) and params.get(WHOLE_BACKUP_FIELD) is not True:
        return None
    client_id, visitor_id = values[CLIENT_FIELD], values[VISITOR_FIELD]
    requested_by, reference = values[REQUESTED_BY_FIELD], values[REFERENCE_FIELD]
    if client_id is None:
        raise ParamError(f"form field {CLIENT_FIELD!r} is empty: give the client whose visitor is erased")
    if not CLIENT_ID_RE.fullmatch(client_id):
        raise ParamError(
            f"form field {CLIENT_FIELD!r} = {client_id!r} is not a client id ({CLIENT_ID_RE.pattern})"
        )
    if visitor_id is None:
        raise ParamError(
            f"form field {VISITOR_FIELD!r} is empty: give the visitor id exactly as the events carry it"
        )
    if len(visitor_id) > MAX_VISITOR_LEN:
        raise ParamError(
            f"form field {VISITOR_FIELD!r} is {len(visitor_id)} characters long: visitor ids have at most "
            f"{MAX_VISITOR_LEN}"
        )
    if requested_by is None:
        raise ParamError(f"form field {REQUESTED_BY_FIELD!r} is empty: say who asked (kept with the request)")
    for name, value in ((REQUESTED_BY_FIELD, requested_by), (REFERENCE_FIELD, reference)):
        if value is not None and len(value) > MAX_TEXT_LEN:
            raise ParamError(f"form field {name!r} is longer than {MAX_TEXT_LEN} characters")
    whole_backup = params.get(WHOLE_BACKUP_FIELD) or False
    if not isinstance(whole_backup, bool):
        raise ParamError(f"form field {WHOLE_BACKUP_FIELD!r} = {whole_backup!r} is not true or false")
    return FormRequest(client_id, visitor_id, requested_by, reference, whole_backup)


def file_request(conn: psycopg.Connection, form: FormRequest, *, run_id: str | None) -> int:
    """Check the client exists and file the request (once per run); return its id.

    :param conn: an open connection (autocommit or not: the insert commits with it).
    :param form: the checked form.
    :param run_id: the Airflow run filing it (a retry of the task finds the same request).
    :raises ParamError: the client does not exist (names the field and close client ids).
    """
    known = [r[0] for r in conn.execute(load_sql("erasure/client_ids.sql"))]
    if form.client_id not in known:
        close = difflib.get_close_matches(form.client_id, known, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ParamError(
            f"form field {CLIENT_FIELD!r} = {form.client_id!r} is not a client (no row in clients){hint}"
        )
    row = conn.execute(
        load_sql("erasure/file_request.sql"),
        {
            "client_id": form.client_id,
            "visitor_id": form.visitor_id,
            "visitor_digest": visitor_digest(form.client_id, form.visitor_id),
            "requested_by": form.requested_by,
            "reference": form.reference,
            "whole_backup": form.whole_backup,
            "run_id": run_id,
        },
    ).fetchone()
    assert row is not None  # the statement returns the new or the existing request
    return int(row[0])


def run(params: Mapping[str, Any] | None, run_id: str | None = None) -> dict[str, Any] | None:
    """Task entry point: file the form's request; None when the form is empty.

    :param params: the run's params (the trigger form).
    :param run_id: the Airflow run id.
    :raises ParamError: a field is wrong (the run fails at once, naming it).
    """
    form = read_form(params)
    if form is None:
        log.info("erasure: empty form: nothing to file; the run carries out the pending requests")
        return None
    with connect(autocommit=True) as conn:
        request_id = file_request(conn, form, run_id=run_id)
    log.info(
        "erasure: request %d filed for client %s (requested by %r, reference %r); this run carries it out",
        request_id,
        form.client_id,
        form.requested_by,
        form.reference,
    )
    return {"request_id": request_id, "client_id": form.client_id}
