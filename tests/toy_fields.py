"""Toy option field types, defined the way an operator or contributor adds one: a
``Field`` subclass and nothing else. Imported by the tests and by a test hub's config."""

from __future__ import annotations

import re
from typing import Any

from hubgate.options import Field, template_literal

DURATION_TEXT = r"^[0-9]+[smh]$"


class Duration(Field):
    """A length of time such as ``90s``, ``30m`` or ``2h``: sent to the official client
    as a string, which it can check only loosely (the service checks the rest)."""

    type_name = "toy-duration"
    official_type = "string"

    def _initial_default(self, default: Any) -> Any:
        return "30m" if default is None else default

    def value_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": DURATION_TEXT}

    def messages(self) -> dict[str, str]:
        name = template_literal(self.field)
        return {
            "type": f"{name} must be a duration such as 30m, got {{got!r}}",
            "pattern": f"{name} must be a number followed by s, m or h, got {{got!r}}",
        }

    def validate(self, value: Any) -> str:
        if not isinstance(value, str):
            self._fail("type", value)
        if not re.fullmatch(DURATION_TEXT, value):
            self._fail("pattern", value)
        return value


class Seed(Field):
    """A whole number the official client never sees: left out of /api/v1/options, so
    its clusters get the default."""

    type_name = "toy-seed"
    official_type = None
    form_input = "number"

    def _initial_default(self, default: Any) -> Any:
        return 7 if default is None else default

    def value_schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": 0}

    def messages(self) -> dict[str, str]:
        name = template_literal(self.field)
        return {
            "type": f"{name} must be a whole number, got {{got!r}}",
            "empty": f"{name} needs a number",
            "minimum": f"{name} cannot be negative, got {{got}}",
        }

    def validate(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self._fail("type", value)
        if value < 0:
            self._fail("minimum", value)
        return value
