"""The option types: ``String``, ``Bool``, ``Integer``, ``Float``, ``Select`` and
``Mapping``. A new type is a ``Field`` subclass here (its ``type_name`` registers it)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import yaml

from .fields import Field, kind_of, number_text, template_literal

__all__ = ["Bool", "Float", "Integer", "Mapping", "Select", "String"]


class String(Field):
    """A text option."""

    type_name = "string"

    def _initial_default(self, default: Any) -> Any:
        return "" if default is None else default

    official_type = "string"

    def value_schema(self) -> dict[str, Any]:
        return {"type": "string"}

    def messages(self) -> dict[str, str]:
        return {"type": template_literal(self.field) + " must be a string, got {got!r}"}

    def validate(self, value: Any) -> str:
        if not isinstance(value, str):
            self._fail("type", value)
        return value


class Bool(Field):
    """A yes/no option."""

    type_name = "bool"

    def _initial_default(self, default: Any) -> Any:
        return False if default is None else default

    official_type = "bool"
    form_input = "checkbox"

    def value_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def messages(self) -> dict[str, str]:
        return {"type": template_literal(self.field) + " must be true or false, got {got!r}"}

    def validate(self, value: Any) -> bool:
        if not isinstance(value, bool):
            self._fail("type", value)
        return value


class _Number(Field):
    form_input = "number"
    # The JSON Schema type and the words for it in messages.
    schema_type: ClassVar[str] = "number"
    kind_text: ClassVar[str] = "a number"

    def __init__(
        self,
        field: str,
        default: Any = None,
        *,
        min: float | None = None,
        max: float | None = None,
        label: str | None = None,
        help: str = "",
        target: str | None = None,
    ) -> None:
        self.field = field
        self.min = self.max = None
        # Bounds are checked with the field's own type rules (an Integer's bounds are ints).
        self.min = None if min is None else self._check_type(min)
        self.max = None if max is None else self._check_type(max)
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{field}: min ({min}) is larger than max ({max})")
        super().__init__(field, default, label=label, help=help, target=target)

    def _initial_default(self, default: Any) -> Any:
        if default is None:
            return self.min if self.min is not None else self._check_type(0)
        return default

    def _check_type(self, value: Any) -> Any:
        raise NotImplementedError

    def type_spec(self) -> dict[str, Any]:
        return {"type": self.type_name, "min": self.min, "max": self.max}

    def value_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.schema_type}
        if self.min is not None:
            schema["minimum"] = self.min
        if self.max is not None:
            schema["maximum"] = self.max
        return schema

    def messages(self) -> dict[str, str]:
        name = template_literal(self.field)
        messages = {
            "type": f"{name} must be {self.kind_text}, got {{got!r}}",
            # A form's number box left empty.
            "empty": f"{name} needs a number",
        }
        if self.min is not None:
            messages["minimum"] = f"{name} must be at least {number_text(self.min)}, got {{got}}"
        if self.max is not None:
            messages["maximum"] = f"{name} must be at most {number_text(self.max)}, got {{got}}"
        return messages

    def validate(self, value: Any) -> Any:
        value = self._check_type(value)
        if self.min is not None and value < self.min:
            self._fail("minimum", value)
        if self.max is not None and value > self.max:
            self._fail("maximum", value)
        return value


class Integer(_Number):
    """A whole-number option, optionally bounded by ``min``/``max``."""

    type_name = "int"
    official_type = "int"
    schema_type = "integer"
    kind_text = "an integer"

    def _check_type(self, value: Any) -> int:
        # bool is a subclass of int, but True workers is a typo, not a count.
        if isinstance(value, bool) or not isinstance(value, int):
            self._fail("type", value)
        return value


class Float(_Number):
    """A number option (integers are accepted and become floats)."""

    type_name = "float"
    official_type = "float"

    def _check_type(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail("type", value)
        return float(value)


class Select(Field):
    """A choice among named options.

    ``options`` is a list of keys, or of ``(key, value)`` pairs: users pick a key (a
    string), the options handler on the service receives its value (any object).
    The default is the first key unless given.
    """

    type_name = "select"

    def __init__(
        self,
        field: str,
        default: str | None = None,
        *,
        options: Sequence[str | tuple[str, Any]] = (),
        label: str | None = None,
        help: str = "",
        target: str | None = None,
    ) -> None:
        if isinstance(options, str) or not isinstance(options, Sequence):
            raise TypeError(f"{field}: options must be a list, got {options!r}")
        if not options:
            raise ValueError(f"{field}: a select field needs at least one option")
        self.choices: dict[str, Any] = {}
        for option in options:
            key, value = option if isinstance(option, tuple) else (option, option)
            if not isinstance(key, str):
                raise TypeError(f"{field}: select keys must be strings, got {key!r}")
            self.choices[key] = value
        super().__init__(field, default, label=label, help=help, target=target)

    @property
    def options(self) -> list[str]:
        """The keys users choose from, in order."""
        return list(self.choices)

    def _initial_default(self, default: Any) -> Any:
        return self.options[0] if default is None else default

    official_type = "select"
    form_input = "choice"

    def type_spec(self) -> dict[str, Any]:
        return {"type": "select", "options": self.options}

    def value_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": self.options}

    def messages(self) -> dict[str, str]:
        text = f" is not a valid choice for {self.field}; choose one of: {', '.join(self.options)}"
        # A value of the wrong type fails the same way as a wrong choice.
        return {
            "enum": "{got!r}" + template_literal(text),
            "type": "{got!r}" + template_literal(text),
        }

    def validate(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            self._fail("enum", value)
        return value

    def transform(self, value: Any) -> Any:
        return copy.deepcopy(self.choices[self.validate(value)])


# What a Mapping value may hold: single values that survive JSON (no dates, no bytes).
_SCALARS = (str, int, float, bool, type(None))
# libyaml when present: a capped value then parses in well under a millisecond.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Mapping(Field):
    """A mapping of names to single values (text, numbers, booleans), e.g. environment
    variables.

    Accepts a dict, or YAML/JSON text (what a form's text area holds). Hostile input is
    bounded before anything is built from it: text above ``max_bytes`` is refused
    unparsed; YAML anchors, aliases and tags (the "billion laughs" shape) and nested
    mappings or lists are refused while reading it; at most ``max_entries`` names of
    at most ``max_key_length`` characters, values of at most ``max_value_length``.
    """

    type_name = "mapping"

    def __init__(
        self,
        field: str,
        default: Any = None,
        *,
        max_bytes: int = 64 * 1024,
        max_entries: int = 256,
        max_key_length: int = 256,
        max_value_length: int = 16 * 1024,
        label: str | None = None,
        help: str = "",
        target: str | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_key_length = max_key_length
        self.max_value_length = max_value_length
        super().__init__(field, default, label=label, help=help, target=target)

    official_type = "mapping"
    form_input = "yaml"

    def _initial_default(self, default: Any) -> Any:
        return {} if default is None else default

    def value_schema(self) -> dict[str, Any]:
        # The byte total and the YAML rules (no anchors, tags or nesting) are the
        # service's to check: JSON Schema cannot say them.
        return {
            "type": "object",
            "maxProperties": self.max_entries,
            "propertyNames": {"maxLength": self.max_key_length},
            "additionalProperties": {
                "type": ["string", "number", "boolean", "null"],
                "maxLength": self.max_value_length,
            },
        }

    def messages(self) -> dict[str, str]:
        name = template_literal(self.field)
        return {
            "type": f"{name} must be a mapping of names to values, got {{kind}}",
            "maxProperties": f"{name} may have at most {self.max_entries} entries",
            # Only the start of a long name is shown.
            "propertyNames/maxLength": f"{name}: the name {{key!r:.41}}... is longer than "
            f"{self.max_key_length} characters",
            "additionalProperties/type": f"{name}: the value of {{key}} must be a single value "
            "(text, a number or true/false), got {kind}; quote it to pass it as text",
            "additionalProperties/maxLength": f"{name}: the value of {{key}} is longer than "
            f"{self.max_value_length} characters",
            "syntax": f"{name} is not valid YAML{{where}}: {{problem}}; "
            "write one `NAME: value` per line",
            "size": f"{name} is too large: at most {self.max_bytes // 1024} KiB of names and values",
            "anchors": f"{name}: YAML anchors and aliases (& and *) are not allowed; "
            "write every value out",
            "tags": f"{name}: YAML tags (!...) are not allowed; quote a value to pass it as text",
            "nested": f"{name}: values must be single values (text, numbers, true/false), "
            "not nested mappings or lists",
        }

    def rich_spec(self) -> dict[str, Any]:
        # The caps travel in hubgate's rich spec only: the official client passes every
        # key of the v1 spec to its own Mapping, which takes none of them.
        entry = super().rich_spec()
        entry["spec"] = {
            **entry["spec"],
            "max_bytes": self.max_bytes,
            "max_entries": self.max_entries,
            "max_key_length": self.max_key_length,
            "max_value_length": self.max_value_length,
        }
        return entry

    def validate(self, value: Any) -> dict[str, Any]:
        if isinstance(value, str):
            value = self._parse_text(value)
        if not isinstance(value, dict):
            self._fail("type", kind=kind_of(value))
        self._check_count(len(value))
        total = 0
        for key, item in value.items():
            if not isinstance(key, str):
                # Only Python callers can get here (JSON and YAML text names are text).
                raise ValueError(f"{self.field}: every name must be a string, got {key!r}")
            if len(key) > self.max_key_length:
                self._fail("propertyNames/maxLength", key=key)
            if not isinstance(item, _SCALARS):
                self._fail("additionalProperties/type", key=key, kind=kind_of(item))
            size = len(item) if isinstance(item, str) else 0
            if size > self.max_value_length:
                self._fail("additionalProperties/maxLength", key=key)
            total += len(key) + size
        if total > self.max_bytes:
            self._too_big()
        return dict(value)

    def _check_count(self, count: int) -> None:
        if count > self.max_entries:
            self._fail("maxProperties")

    def _too_big(self) -> None:
        self._fail("size")

    def _parse_text(self, text: str) -> Any:
        if not text.strip():
            return {}
        # Measured before parsing: a huge text is refused without being read.
        if len(text) > self.max_bytes or len(text.encode()) > self.max_bytes:
            self._too_big()
        try:
            self._check_events(text)
            return yaml.load(text, Loader=_YAML_LOADER)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "it could not be parsed"
            self._fail("syntax", where=where, problem=problem)

    def _check_events(self, text: str) -> None:
        """Read the YAML's events (no objects are built) and stop at the first thing a
        flat mapping of names to values does not need."""
        depth = 0
        scalars = 0
        nested = False
        for event in yaml.parse(text, Loader=_YAML_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                self._fail("anchors")
            if getattr(event, "tag", None) and not isinstance(event, yaml.DocumentStartEvent):
                self._fail("tags")
            if isinstance(event, yaml.CollectionStartEvent):
                # Read on (the text is small): a syntax error further down is the
                # more useful message for a half-typed value.
                nested = nested or depth >= 1
                depth += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.ScalarEvent):
                scalars += 1
                self._check_count(scalars // 2)
        if nested:
            self._fail("nested")
