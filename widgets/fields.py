"""Reading option fields and turning what a user typed into a validated value.

The fields come from the client's ``Options`` (``hubgate.options``); this module only relies
on what every field has: ``field``, ``label``, ``help``, ``default``, its type and
constraints, and ``validate(value)`` raising ``ValueError`` (or ``TypeError``) with a message
for the user. Nothing here imports ipywidgets, so it is tested without a frontend.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

KINDS = ("int", "float", "string", "bool", "select", "mapping")

# Class names of field types (hubgate's and dask-gateway's) mapped to spec types.
_CLASS_KINDS = {
    "integer": "int",
    "int": "int",
    "float": "float",
    "string": "string",
    "str": "string",
    "bool": "bool",
    "boolean": "bool",
    "select": "select",
    "mapping": "mapping",
}

_INT_TEXT = re.compile(r"^[+-]?\d+$")


def option_fields(options: Any) -> list[Any]:
    """The Field objects of an ``Options``, in their order."""
    fields = getattr(options, "fields", None)
    if fields is None:
        fields = options.__dict__.get("_fields")
    if fields is None:
        raise TypeError(f"{type(options).__name__} has no option fields")
    if isinstance(fields, Mapping):
        return list(fields.values())
    return list(fields)


def field_spec(field: Any) -> dict[str, Any]:
    """The field's type spec (``{"type": ..., "min": ...}``) if it offers one."""
    spec = getattr(field, "spec", None)
    if callable(spec):
        spec = spec()
    if isinstance(spec, Mapping):
        # A whole v1 spec entry carries the type spec under "spec".
        inner = spec.get("spec")
        return dict(inner) if isinstance(inner, Mapping) else dict(spec)
    return {}


def field_kind(field: Any) -> str:
    """One of ``KINDS`` for a field."""
    kind = field_spec(field).get("type")
    if kind is None:
        for attr in ("type", "kind"):
            value = getattr(field, attr, None)
            if isinstance(value, str):
                kind = value
                break
    if kind is None:
        kind = _CLASS_KINDS.get(type(field).__name__.lower())
    if kind not in KINDS:
        raise TypeError(f"Option field {field.field!r} has an unknown type {kind!r}")
    return kind


def field_constraint(field: Any, name: str) -> Any:
    """A type-specific constraint (``min``, ``max``, ``options``), or None."""
    spec = field_spec(field)
    if name in spec:
        return spec[name]
    return getattr(field, name, None)


def field_label(field: Any) -> str:
    return getattr(field, "label", None) or field.field


def field_help(field: Any) -> str:
    return getattr(field, "help", None) or ""


def select_options(field: Any) -> list[str]:
    return [str(o) for o in (field_constraint(field, "options") or ())]


@dataclass(frozen=True)
class Checked:
    """The outcome of checking one input: a valid value, or the message to show."""

    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_text(kind: str, text: str) -> Any:
    """Turn the text typed into a number or mapping input into a Python value.

    Text that is not a number is passed on as text, so the field's own validation produces
    its message (``worker_cores must be an integer, got 'abc'``) rather than one of ours.
    """
    stripped = text.strip()
    if kind == "int":
        if _INT_TEXT.match(stripped):
            return int(stripped)
        try:
            return float(stripped)
        except ValueError:
            return text
    if kind == "float":
        try:
            return int(stripped) if _INT_TEXT.match(stripped) else float(stripped)
        except ValueError:
            return text
    if kind == "mapping":
        if not stripped:
            return {}
        return yaml.safe_load(stripped)
    return text


def check_input(field: Any, kind: str, raw: Any) -> Checked:
    """Validate what a user entered for ``field``; never raises for bad input."""
    try:
        value = parse_text(kind, raw) if isinstance(raw, str) and kind in _TEXT_KINDS else raw
    except yaml.YAMLError as exc:
        # hubgate's Mapping field parses text itself, with the service's message.
        try:
            field.validate(raw)
        except (ValueError, TypeError) as field_exc:
            return Checked(error=str(field_exc))
        except Exception:
            pass
        problem = getattr(exc, "problem", None) or "it could not be parsed"
        return Checked(error=f"{field.field} is not valid YAML: {problem}")
    if kind in ("int", "float") and isinstance(raw, str) and not raw.strip():
        return Checked(error=f"{field.field} needs a number")
    try:
        validated = field.validate(value)
    except (ValueError, TypeError) as exc:
        return Checked(error=str(exc))
    return Checked(value=value if validated is None else validated)


_TEXT_KINDS = ("int", "float", "mapping")


def mapping_text(value: Any) -> str:
    """A mapping shown as YAML in a text area (empty for an empty mapping)."""
    if not value:
        return ""
    return yaml.safe_dump(dict(value), default_flow_style=False, sort_keys=False)


def current_values(options: Any, fields: Iterable[Any]) -> dict[str, Any]:
    """The current value of each field in ``options`` (its default when unreadable)."""
    values = {}
    for field in fields:
        try:
            values[field.field] = options[field.field]
        except (KeyError, TypeError):
            values[field.field] = getattr(field, "default", None)
    return values
