"""The trigger form of events_gdpr_erasure: checked field by field, errors naming the field."""

from __future__ import annotations

import pytest

from events_pipeline.common.run_params import ParamError
from events_pipeline.erasure.intake import FormRequest, read_form


def test_an_empty_form_files_nothing():
    assert read_form(None) is None
    assert read_form({"client_id": None, "visitor_id": "", "requested_by": "  ", "reference": None}) is None


def test_a_complete_form_is_stripped():
    form = read_form({"client_id": "acme", "visitor_id": " v-1 ", "requested_by": "DPO", "reference": " "})
    assert form == FormRequest("acme", "v-1", "DPO", None)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"visitor_id": "v"}, "form field 'client_id' is empty"),
        (
            {"client_id": "Acme", "visitor_id": "v", "requested_by": "x"},
            "form field 'client_id' = 'Acme' is not",
        ),
        ({"client_id": "acme", "requested_by": "x"}, "form field 'visitor_id' is empty"),
        (
            {"client_id": "acme", "visitor_id": "v" * 101, "requested_by": "x"},
            "'visitor_id' is 101 characters",
        ),
        ({"client_id": "acme", "visitor_id": "v"}, "form field 'requested_by' is empty"),
        (
            {"client_id": "acme", "visitor_id": 12, "requested_by": "x"},
            "form field 'visitor_id' = 12 is not text",
        ),
        (
            {"client_id": "acme", "visitor_id": "v", "requested_by": "x", "reference": "r" * 201},
            "'reference' is longer than 200",
        ),
    ],
)
def test_a_wrong_form_names_the_field(params, message):
    with pytest.raises(ParamError, match=message):
        read_form(params)


def test_the_whole_backup_history_box():
    base = {"client_id": "acme", "visitor_id": "v", "requested_by": "x"}
    assert read_form({**base, "whole_backup_history": True}).whole_backup is True
    assert read_form(base).whole_backup is False
    with pytest.raises(ParamError, match="form field 'client_id' is empty"):
        read_form({"whole_backup_history": True})
    with pytest.raises(ParamError, match="'whole_backup_history' = 'yes' is not true or false"):
        read_form({**base, "whole_backup_history": "yes"})
