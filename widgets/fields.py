"""The option fields as a form sees them, and what a user typed turned into a value.

Everything comes from the fields' own schema (``Field.json_schema()`` and
``Field.ui_schema()`` in ``hubgate.options``, what ``api/hubgate/options`` serves to the lab
extension): the label, help, bounds and choices, how typed text is read (``ui:options``
``input``), and the messages, which the field's ``validate`` raises. Nothing here knows
a field type, so a new type needs no change here. Nothing imports ipywidgets, so this is
tested without a frontend.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

# Text a number box reads as a number (the lab extension reads the same way); other
# text reaches the field as text, so its message shows what was typed.
_INT_TEXT = re.compile(r"^[+-]?\d+$")
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class FormField:
    """One option field, read from its schema."""

    field: Any
    schema: dict[str, Any]
    ui: dict[str, Any]

    @property
    def name(self) -> str:
        return self.field.field

    @property
    def label(self) -> str:
        return self.schema.get("title") or self.name

    @property
    def help(self) -> str:
        return self.ui.get("ui:help") or self.schema.get("description") or ""

    @property
    def input(self) -> str:
        """How typed text is read: text, number, checkbox, choice or yaml."""
        return self.ui.get("ui:options", {}).get("input", "text")

    @property
    def choices(self) -> list[str]:
        return [str(choice) for choice in self.schema.get("enum", ())]

    @property
    def bounds(self) -> tuple[Any, Any]:
        return self.schema.get("minimum"), self.schema.get("maximum")

    def message(self, keyword: str) -> str | None:
        return self.schema.get("x-hubgate-messages", {}).get(keyword)


def option_fields(options: Any) -> list[Any]:
    """The Field objects of an ``Options``, in their order."""
    fields = options.__dict__.get("_fields")
    if fields is None:
        raise TypeError(f"{type(options).__name__} has no option fields")
    if isinstance(fields, Mapping):
        return list(fields.values())
    return list(fields)


def form_fields(options: Any) -> list[FormField]:
    """The form's fields, from each field's JSON Schema and UI hints."""
    return [FormField(f, f.json_schema(), f.ui_schema()) for f in option_fields(options)]


@dataclass(frozen=True)
class Checked:
    """The outcome of checking one input: a valid value, or the message to show."""

    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def read_number(text: str) -> Any:
    """A number box's text as a number (an int when written as one), else the text."""
    stripped = text.strip()
    if _INT_TEXT.match(stripped):
        return int(stripped)
    if _FLOAT_TEXT.match(stripped):
        return float(stripped)
    return text


def check_input(form_field: FormField, raw: Any) -> Checked:
    """Validate what a user entered; never raises for bad input. YAML text goes to the
    field as it is: the field reads it with its own limits and messages."""
    value = raw
    if form_field.input == "number" and isinstance(raw, str):
        if not raw.strip():
            return Checked(error=form_field.message("empty") or f"{form_field.name} needs a number")
        value = read_number(raw)
    try:
        validated = form_field.field.validate(value)
    except (ValueError, TypeError) as exc:
        return Checked(error=str(exc))
    return Checked(value=value if validated is None else validated)


def mapping_text(value: Any) -> str:
    """A mapping shown as YAML in a text area (empty for an empty mapping)."""
    if not value:
        return ""
    return yaml.safe_dump(dict(value), default_flow_style=False, sort_keys=False)


def current_values(options: Any, fields: Iterable[FormField]) -> dict[str, Any]:
    """The current value of each field in ``options`` (its default when unreadable)."""
    values = {}
    for form_field in fields:
        try:
            values[form_field.name] = options[form_field.name]
        except (KeyError, TypeError):
            values[form_field.name] = form_field.schema.get("default")
    return values
