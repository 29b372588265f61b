"""The shared option cases (tests/options_cases.json), in Python: each field's own
validation (what the service and hubgate's client apply) and the widget form's reading of
typed text. labextension/src/__tests__/options_cases.spec.ts runs the same cases."""

from __future__ import annotations

from typing import Any

import pytest

from hubgate.options import OptionsError
from hubgate.widgets.fields import FormField, check_input
from tests.options_cases import load, option_set

DOC = load()
OPTION_SET = option_set(DOC)
FIELDS = {f.field: f for f in OPTION_SET.fields}


def case_id(case: dict[str, Any]) -> str:
    given = case.get("typed", case.get("value"))
    return f"{case['field']}:{'typed' if 'typed' in case else 'value'}:{given!r}"


def test_the_stored_form_is_what_the_fields_produce_now() -> None:
    # jest reads the stored form: it must be the schema Python serves today.
    assert DOC["form"] == OPTION_SET.form_schema(), (
        "tests/options_cases.json is stale: run `python -m tests.options_cases`"
    )


def test_every_field_type_has_cases() -> None:
    assert {type(f).type_name for f in OPTION_SET.fields} >= {
        "int",
        "float",
        "string",
        "bool",
        "select",
        "mapping",
    }
    assert {c["field"] for c in DOC["cases"]} == set(FIELDS)


def expected_error(case: dict[str, Any]) -> str | None:
    return case.get("python_error", case.get("error"))


@pytest.mark.parametrize("case", DOC["cases"], ids=case_id)
def test_case(case: dict[str, Any]) -> None:
    field = FIELDS[case["field"]]
    if "typed" in case:
        form_field = FormField(field, field.json_schema(), field.ui_schema())
        checked = check_input(form_field, case["typed"])
        got_value, got_error = checked.value, checked.error
    else:
        # A value sent as JSON: the service's check of a request.
        try:
            got_value, got_error = OPTION_SET.validate({field.field: case["value"]}), None
            got_value = got_value[field.field]
        except OptionsError as exc:
            got_value, got_error = None, str(exc)
    if "error_starts" in case:
        assert got_error is not None and got_error.startswith(case["error_starts"]), got_error
    elif expected_error(case) is not None:
        assert got_error == expected_error(case)
    else:
        assert got_error is None, got_error
        assert got_value == case["value"]
