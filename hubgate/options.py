"""Cluster options: one definition for the service, the client and the widgets.

Operators declare fields (:class:`Integer`, :class:`Float`, :class:`String`,
:class:`Bool`, :class:`Select`, :class:`Mapping`) in an :class:`OptionSet`; the service
publishes ``OptionSet.spec()`` (dask-gateway's v1 format, which the official client
reads) and ``rich_spec()`` (plus help texts), and parses requests with
``OptionSet.parse``. The client rebuilds the same field objects from the spec
(:meth:`Options._from_spec`), so a value is checked by the same code, with the same
message, in the notebook and in the service.

Every field also describes itself as JSON Schema (``Field.json_schema()``, with its
message templates under ``x-hubgate-messages``) and form hints (``Field.ui_schema()``):
``OptionSet.form_schema()`` is what the lab extension and the widgets build their forms
from, so a new field type is a subclass here and nothing else. The official
dask-gateway client knows six type names only: ``Field.official_type`` says which of
them a field travels as on ``/api/v1/options`` (None: not sent there; the service
applies its default).
"""

from __future__ import annotations

import copy
import html
import inspect
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from typing import Any, ClassVar, NoReturn

import yaml

from .cluster_names import DISPLAY_NAME_OPTION

__all__ = [
    "Bool",
    "Field",
    "Float",
    "Integer",
    "Mapping",
    "OptionSet",
    "OptionSetError",
    "Options",
    "OptionsError",
    "Select",
    "String",
    "environment_variables_field",
    "idle_timeout_field",
    "image_field",
    "profile_field",
    "resolve_option_set",
    "resources_per_worker_field",
    "standard_handler",
    "standard_handler_keys",
    "template_literal",
    "worker_cores_field",
    "worker_memory_field",
    "worker_setup_field",
]

GiB = 2**30


class OptionsError(ValueError):
    """Cluster options a user asked for are not acceptable; the text says why."""


class OptionSetError(TypeError):
    """The operator's option set is wrong (a cluster_options callable that returns no
    OptionSet, a handler that returns no dict): not the user's doing."""


def _number_text(value: Any) -> str:
    """Numbers as people write them: 4 rather than 4.000000, 2.5 rather than 2.50."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# A few words for the type of a bad value, for messages; keyed by JSON type so that
# forms (which see JSON values) use the same words (the schema's ``x-hubgate-kinds``).
KIND_WORDS = {
    "boolean": "a boolean",
    "number": "a number",
    "string": "a string",
    "array": "a list",
    "object": "a dict",
    "null": "nothing",
}
_JSON_TYPES = {
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    tuple: "array",
    dict: "object",
    type(None): "null",
}


def _kind_of(value: Any) -> str:
    """A few words for the type of a bad value, for messages."""
    json_type = _JSON_TYPES.get(type(value))
    return KIND_WORDS[json_type] if json_type else f"a {type(value).__name__}"


# The type names the official dask-gateway client can read (it looks them up in a fixed
# table and fails with a KeyError on any other).
OFFICIAL_TYPES = ("string", "bool", "int", "float", "select", "mapping")

# How a form reads what people type for a field (``ui:options.input`` in the UI schema).
FORM_INPUTS = ("text", "number", "checkbox", "choice", "yaml")


def template_literal(text: str) -> str:
    """Text placed in a message template as is (braces escaped)."""
    return text.replace("{", "{{").replace("}", "}}")


class _Shown:
    """A value in a message template: ``{got}`` is its number text, ``{got!r}`` its repr."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        return _number_text(self.value)

    def __repr__(self) -> str:
        return repr(self.value)


class Field:
    """One cluster option.

    Parameters
    ----------
    field:
        The option's name, as users type it (``options.worker_cores``).
    default:
        The value used when the user does not set one.
    label:
        A short human title, shown in forms. Defaults to ``field``.
    help:
        A sentence or two explaining the option, shown as a tooltip (hubgate only).
    target:
        Service side: the key under which the value reaches the options handler.
        Defaults to ``field``.
    """

    type_name: ClassVar[str] = ""
    # The official client's type this field is sent as on /api/v1/options (one of
    # OFFICIAL_TYPES; its values must be values this field accepts), or None to leave the
    # field out there: the service then applies the default.
    official_type: ClassVar[str | None] = None
    # How forms read typed text for this field (one of FORM_INPUTS).
    form_input: ClassVar[str] = "text"
    _registry: ClassVar[dict[str, type[Field]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.type_name:
            return
        # A type that would break the official client or the forms fails at import.
        if cls.official_type is not None and cls.official_type not in OFFICIAL_TYPES:
            raise TypeError(
                f"{cls.__name__}.official_type must be None or one of "
                f"{', '.join(OFFICIAL_TYPES)}, got {cls.official_type!r}"
            )
        if cls.form_input not in FORM_INPUTS:
            raise TypeError(
                f"{cls.__name__}.form_input must be one of {', '.join(FORM_INPUTS)}, "
                f"got {cls.form_input!r}"
            )
        Field._registry[cls.type_name] = cls

    def __init__(
        self,
        field: str,
        default: Any = None,
        *,
        label: str | None = None,
        help: str = "",
        target: str | None = None,
    ) -> None:
        if not isinstance(field, str) or not field:
            raise TypeError(f"A field name must be a non-empty string, got {field!r}")
        self.field = field
        self.label = label or field
        self.help = help
        self.target = target or field
        # An operator's bad default should fail when the option set is defined.
        self.default = self.validate(self._initial_default(default))

    def _initial_default(self, default: Any) -> Any:
        return default

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.field!r}, default={self.default!r})"

    # -- the wire format -------------------------------------------------------
    def type_spec(self) -> dict[str, Any]:
        """The ``spec`` member of the v1 entry: the type and its constraints only."""
        return {"type": self.type_name}

    def spec(self) -> dict[str, Any]:
        """The entry of dask-gateway's v1 options spec for this field, exactly."""
        return {
            "field": self.field,
            "label": self.label,
            "default": self.get_default(),
            "spec": self.type_spec(),
        }

    def official_spec(self) -> dict[str, Any] | None:
        """The entry ``/api/v1/options`` sends: ``spec()`` for the six types the official
        client knows, the closest of them for other types, None for none."""
        if self.official_type is None:
            return None
        if self.official_type == self.type_name:
            return self.spec()
        type_spec: dict[str, Any] = {"type": self.official_type}
        # Only the constraints the official type's constructor takes (it gets them all).
        if self.official_type in ("int", "float"):
            type_spec["min"] = getattr(self, "min", None)
            type_spec["max"] = getattr(self, "max", None)
        elif self.official_type == "select":
            type_spec["options"] = list(getattr(self, "options", ()))
        return {**self.spec(), "spec": type_spec}

    def rich_spec(self) -> dict[str, Any]:
        """The v1 entry plus hubgate's ``help`` text and the official type it falls
        back to (so an older hubgate client can still read a newer type)."""
        return {**self.spec(), "help": self.help, "official_type": self.official_type}

    # -- the schema forms are built from ------------------------------------------
    def value_schema(self) -> dict[str, Any]:
        """The JSON Schema keywords a value must meet (the rules forms check)."""
        raise NotImplementedError

    def messages(self) -> dict[str, str]:
        """Message templates keyed by the JSON Schema keyword a value fails: the one
        source of this field's messages, here and in every form. Placeholders: ``{got}``
        (a number as people write it), ``{got!r}`` (Python's repr), ``{kind}`` (a few
        words for a value's type), ``{key}``, ``{where}``, ``{problem}``; ``!r`` and a
        precision (``{key!r:.41}``) as in ``str.format``."""
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        """This field as a JSON Schema property, with its messages."""
        return {
            **self.value_schema(),
            "title": self.label,
            "description": self.help,
            "default": self.get_default(),
            "x-hubgate-messages": self.messages(),
        }

    def ui_schema(self) -> dict[str, Any]:
        """Form hints (react-jsonschema-form's ``ui:`` keys)."""
        return {"ui:help": self.help, "ui:options": {"input": self.form_input}}

    def _fail(self, keyword: str, got: Any = None, **extra: Any) -> NoReturn:
        """Raise this field's message for ``keyword``."""
        raise ValueError(self.messages()[keyword].format(got=_Shown(got), **extra))

    @classmethod
    def from_spec(cls, entry: dict[str, Any]) -> Field:
        """Rebuild a field from a v1 (or rich) spec entry sent by a server. A type this
        client does not know is read as the official type the entry names, if any."""
        try:
            type_spec = dict(entry["spec"])
            type_name = type_spec.pop("type")
            if type_name not in cls._registry and entry.get("official_type"):
                type_name = entry["official_type"]
            field_cls = cls._registry[type_name]
        except KeyError as exc:
            raise ValueError(
                f"The gateway sent an option {entry.get('field')!r} this client does not "
                f"understand (missing or unknown {exc}); upgrade hubgate"
            ) from None
        # Be lenient with constraints a newer server may add: keep the ones we know.
        accepted = inspect.signature(field_cls.__init__).parameters
        constraints = {k: v for k, v in type_spec.items() if k in accepted}
        return field_cls(
            entry["field"],
            entry.get("default"),
            label=entry.get("label"),
            help=entry.get("help") or "",
            **constraints,
        )

    # -- values ---------------------------------------------------------------
    def get_default(self) -> Any:
        return copy.deepcopy(self.default)

    def validate(self, value: Any) -> Any:
        """Return the normalised value, or raise ``ValueError`` saying what is wrong."""
        raise NotImplementedError

    def transform(self, value: Any) -> Any:
        """Service side: the value as the options handler sees it."""
        return value


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
            messages["minimum"] = f"{name} must be at least {_number_text(self.min)}, got {{got}}"
        if self.max is not None:
            messages["maximum"] = f"{name} must be at most {_number_text(self.max)}, got {{got}}"
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
            self._fail("type", kind=_kind_of(value))
        self._check_count(len(value))
        total = 0
        for key, item in value.items():
            if not isinstance(key, str):
                # Only Python callers can get here (JSON and YAML text names are text).
                raise ValueError(f"{self.field}: every name must be a string, got {key!r}")
            if len(key) > self.max_key_length:
                self._fail("propertyNames/maxLength", key=key)
            if not isinstance(item, _SCALARS):
                self._fail("additionalProperties/type", key=key, kind=_kind_of(item))
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


def _field_list(fields: Any) -> str:
    return ", ".join(fields) if fields else "(none)"


class _AttrDict(dict):
    """The handler's view of options: ``options.worker_cores`` or ``options["..."]``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"No option {key!r}; available: {_field_list(self)}") from None


Handler = Callable[..., dict[str, Any] | Awaitable[dict[str, Any]]]


class OptionSet:
    """The options a service offers, and how they become a cluster's configuration.

    ``handler(options)`` or ``handler(options, user)``, sync or async, receives the
    validated, transformed options (keys renamed by ``target``, select keys replaced by
    their values; attribute access works) and returns the cluster config dict. Without
    a handler the transformed options are the config. A handler refuses options by
    raising ``ValueError`` (or :class:`OptionsError`): the user sees its text. Any other
    exception is a bug in the handler and propagates unchanged (the service logs it and
    shows the user only an error id).
    """

    def __init__(self, *fields: Field, handler: Handler | None = None) -> None:
        names = [f.field for f in fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Option names must be unique; repeated: {', '.join(duplicates)}")
        if DISPLAY_NAME_OPTION in names:
            raise ValueError(
                f"{DISPLAY_NAME_OPTION!r} cannot be an option name: hubgate shows a "
                "cluster's display name among its options under that key"
            )
        for f in fields:
            if not isinstance(f, Field):
                raise TypeError(f"OptionSet takes Field objects, got {f!r}")
        self.fields: tuple[Field, ...] = fields
        self._by_name = {f.field: f for f in fields}
        self.handler = handler
        self._handler_takes_user = handler is not None and _accepts_two_args(handler)

    def __repr__(self) -> str:
        return f"OptionSet({', '.join(self._by_name)})"

    def spec(self) -> list[dict[str, Any]]:
        """dask-gateway's v1 ``cluster_options`` list: only types the official client
        knows, each field of another type as its ``official_type`` or left out."""
        entries = (f.official_spec() for f in self.fields)
        return [entry for entry in entries if entry is not None]

    def rich_spec(self) -> list[dict[str, Any]]:
        """Every field with its help text (hubgate's ``api/hubgate/options``)."""
        return [f.rich_spec() for f in self.fields]

    def form_schema(self) -> dict[str, Any]:
        """The JSON Schema of a request's options and the form hints (``ui:order``,
        labels, help, how to read typed text): what every form is built from."""
        return {
            "schema": {
                "type": "object",
                "properties": {f.field: f.json_schema() for f in self.fields},
                "additionalProperties": False,
                "x-hubgate-kinds": dict(KIND_WORDS),
            },
            "ui_schema": {
                "ui:order": [f.field for f in self.fields],
                **{f.field: f.ui_schema() for f in self.fields},
            },
        }

    def validate(self, request_options: Any) -> dict[str, Any]:
        """Check a request's options; return every option's value (defaults filled in)."""
        if request_options is None:
            request_options = {}
        if not isinstance(request_options, dict):
            raise OptionsError(
                f"Cluster options must be a mapping of option names to values, "
                f"got {_kind_of(request_options)}"
            )
        unknown = [k for k in request_options if k not in self._by_name]
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            noun = "option" if len(unknown) == 1 else "options"
            raise OptionsError(
                f"Unknown {noun} {names}; available options: {_field_list(self._by_name)}"
            )
        options = {}
        for name, f in self._by_name.items():
            try:
                options[name] = (
                    f.validate(request_options[name])
                    if name in request_options
                    else f.get_default()
                )
            except ValueError as exc:
                raise OptionsError(str(exc)) from None
        return options

    def transform(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validated options as the handler sees them (targets, select values)."""
        return {f.target: f.transform(options[f.field]) for f in self.fields}

    async def parse(self, request_options: Any, user: Any = None) -> tuple[dict, dict]:
        """Validate a request and compute the cluster config: ``(options, config)``.

        ``options`` is what the user chose (for display and for the wire); ``config``
        is the handler's result.
        """
        options = self.validate(request_options)
        transformed = _AttrDict(self.transform(options))
        if self.handler is None:
            return options, dict(transformed)
        try:
            result = (
                self.handler(transformed, user)
                if self._handler_takes_user
                else self.handler(transformed)
            )
            if inspect.isawaitable(result):
                result = await result
        except ValueError as exc:
            raise OptionsError(str(exc) or type(exc).__name__) from exc
        if not isinstance(result, dict):
            raise OptionSetError(
                f"The cluster options handler {self.handler!r} must return a dict, "
                f"got {type(result).__name__}"
            )
        return options, result

    def result_keys(self) -> set[str] | None:
        """The keys the handler's result can have, when known without running it (no
        handler, or ``standard_handler``); None for a handler of the operator's own.
        Lets the service check an option set's keys when it starts."""
        if self.handler is None:
            return {f.target for f in self.fields}
        if self.handler is standard_handler:
            return standard_handler_keys(self.fields)
        return None


def _accepts_two_args(func: Callable[..., Any]) -> bool:
    params = inspect.signature(func).parameters.values()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


async def resolve_option_set(
    cluster_options: OptionSet | Callable[[Any], Any] | None, user: Any
) -> OptionSet:
    """The option set for ``user``: ``cluster_options`` itself, or what a (sync or
    async) callable ``cluster_options(user)`` returns (per-user or per-group sets)."""
    if cluster_options is None:
        return OptionSet()
    if isinstance(cluster_options, OptionSet):
        return cluster_options
    if not callable(cluster_options):
        raise OptionSetError(
            f"cluster_options must be an OptionSet or a callable returning one, "
            f"got {cluster_options!r}"
        )
    result = cluster_options(user)
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, OptionSet):
        raise OptionSetError(
            f"The cluster_options callable {cluster_options!r} must return an OptionSet, "
            f"got {type(result).__name__}"
        )
    return result


# -- the client's view ---------------------------------------------------------------


class Options(MutableMapping):
    """The options for a new cluster, as offered by the gateway.

    A mapping with attribute access (``options.worker_cores = 2``); every value is
    checked when set, with the same rules and messages as the service. Shown as a form
    in notebooks when ``hubgate.widgets`` and ipywidgets are available.
    """

    def __init__(self, *fields: Field) -> None:
        object.__setattr__(self, "_fields", {f.field: f for f in fields})
        object.__setattr__(self, "_values", {f.field: f.get_default() for f in fields})
        # Callbacks ``(name, value)`` run after a value changes (forms stay in sync).
        object.__setattr__(self, "_observers", [])

    @classmethod
    def _from_spec(cls, spec: list[dict[str, Any]]) -> Options:
        """Build from a server's spec list (v1 entries, with or without ``help``)."""
        return cls(*(Field.from_spec(entry) for entry in spec if not _left_out(entry)))

    def _observe(self, callback: Callable[[str, Any], None]) -> None:
        self._observers.append(callback)

    def _lookup(self, key: str, exc_cls: type[Exception]) -> Field:
        try:
            return self._fields[key]
        except KeyError:
            raise exc_cls(
                f"No option {key!r} available; available options: {_field_list(self._fields)}"
            ) from None

    def _get(self, key: str, exc_cls: type[Exception]) -> Any:
        self._lookup(key, exc_cls)
        return self._values[key]

    def _set(self, key: str, value: Any, exc_cls: type[Exception]) -> None:
        field = self._lookup(key, exc_cls)
        self._values[key] = field.validate(value)
        for callback in list(self._observers):
            callback(key, self._values[key])

    def __getattr__(self, key: str) -> Any:
        # Private names are never options; this also keeps copy/pickle from recursing.
        if key.startswith("_"):
            raise AttributeError(key)
        return self._get(key, AttributeError)

    def __setattr__(self, key: str, value: Any) -> None:
        self._set(key, value, AttributeError)

    def __getitem__(self, key: str) -> Any:
        return self._get(key, KeyError)

    def __setitem__(self, key: str, value: Any) -> None:
        self._set(key, value, KeyError)

    def __delitem__(self, key: str) -> None:
        raise TypeError("Cluster options cannot be deleted; set them to another value")

    def __delattr__(self, key: str) -> None:
        self.__delitem__(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {k for k in self._fields if k.isidentifier()})

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Options<{inner}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        if cycle:
            p.text("Options<...>")
            return
        with p.group(8, "Options<", ">"):
            for index, (key, value) in enumerate(self._values.items()):
                if index:
                    p.text(",")
                    p.breakable()
                p.text(f"{key}=")
                p.pretty(value)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align: left' title='{html.escape(f.help, quote=True)}'>{html.escape(f.label)}</th>"
            f"<td><code>{html.escape(f.field)}</code></td><td>{html.escape(repr(self._values[f.field]))}</td></tr>"
            for f in self._fields.values()
        )
        return (
            "<div><h3>Cluster options</h3><table>"
            "<tr><th>Option</th><th>Name</th><th>Value</th></tr>"
            f"{rows}</table></div>"
        )

    def _ipython_display_(self, **kwargs: Any) -> None:
        from IPython.display import display

        widget = None
        try:
            import ipywidgets  # noqa: F401

            from hubgate.widgets import options_widget

            widget = options_widget(self)
        except ImportError:
            widget = None
        if widget is not None:
            display(widget, **kwargs)
        else:
            display({"text/plain": repr(self), "text/html": self._repr_html_()}, raw=True)


def _left_out(entry: dict[str, Any]) -> bool:
    """A field of a type this client does not know, which the service says the official
    client goes without: this one does too (the service applies its default)."""
    type_name = (entry.get("spec") or {}).get("type")
    return (
        "official_type" in entry
        and entry["official_type"] is None
        and type_name not in Field._registry
    )


# -- ready-made fields for operators -------------------------------------------------


def worker_cores_field(
    default: int = 1, *, min: int = 1, max: int | None = 4, field: str = "worker_cores"
) -> Integer:
    """Threads (and CPU cores requested) per worker."""
    return Integer(
        field,
        default,
        min=min,
        max=max,
        label="Worker cores",
        help="CPU cores (threads) for each worker.",
    )


def worker_memory_field(
    default: float = 2, *, min: float = 0.5, max: float | None = 16, field: str = "worker_memory"
) -> Float:
    """Memory per worker, in GiB."""
    return Float(
        field,
        default,
        min=min,
        max=max,
        label="Worker memory (GiB)",
        help="Memory limit for each worker, in GiB. A worker that exceeds it is restarted.",
    )


# 2i2c's choices: whole fractions of a 16-CPU node, with memory in proportion.
DEFAULT_RESOURCES_PER_WORKER = (1, 2, 4, 8, 16)


def resources_per_worker_field(
    cpus: Sequence[int] = DEFAULT_RESOURCES_PER_WORKER,
    *,
    gib_per_cpu: float = 4,
    default: str | None = None,
    field: str = "resources_per_worker",
) -> Select:
    """Whole-CPU worker sizes with memory in proportion; the handler sees
    ``{"worker_cores": n, "worker_memory": bytes}``."""
    choices = []
    for n in cpus:
        memory = n * gib_per_cpu
        key = f"{n} CPU, {_number_text(float(memory))} GiB"
        choices.append((key, {"worker_cores": n, "worker_memory": int(memory * GiB)}))
    return Select(
        field,
        default,
        options=choices,
        label="Resources per worker",
        help="CPU and memory for each worker; sizes fit the nodes without waste.",
    )


def profile_field(
    profiles: Sequence[str | tuple[str, Any]], *, default: str | None = None, field: str = "profile"
) -> Select:
    """A named profile; give ``(name, config_dict)`` pairs to map names to settings."""
    return Select(
        field,
        default,
        options=profiles,
        label="Profile",
        help="A preset chosen by your administrators (size, image, queue...).",
    )


def image_field(default: str = "", *, field: str = "image", label: str = "Image") -> String:
    """The container image or software environment workers run in."""
    return String(
        field,
        default,
        label=label,
        help="The software environment of the scheduler and workers. Its dask, "
        "distributed and Python versions should match your notebook's.",
    )


def environment_variables_field(
    default: dict[str, str] | None = None, *, field: str = "environment"
) -> Mapping:
    """Environment variables for the scheduler and workers (YAML in forms)."""
    return Mapping(
        field,
        default,
        label="Environment variables (YAML)",
        help="Set for the scheduler and every worker, one `NAME: value` per line.",
    )


def idle_timeout_field(
    default: int = 30, *, min: int = 0, max: int | None = None, field: str = "idle_timeout_minutes"
) -> Integer:
    """Minutes without work after which the cluster is shut down (0: never)."""
    return Integer(
        field,
        default,
        min=min,
        max=max,
        label="Idle cluster terminated after (minutes)",
        help="The cluster shuts down after this many minutes with no tasks. 0 keeps it.",
    )


def worker_setup_field(default: str = "", *, field: str = "worker_setup") -> String:
    """Shell commands run before each worker starts (e.g. activating an environment)."""
    return String(
        field,
        default,
        label="Worker setup",
        help="Shell commands run before each worker starts, e.g. `source activate myenv`.",
    )


def standard_handler_keys(fields: Sequence[Field]) -> set[str]:
    """The keys ``standard_handler`` can return for these fields (mirrors it)."""
    keys: set[str] = set()
    for f in fields:
        if f.target in _MERGED_OPTIONS and isinstance(f, Select):
            for value in f.choices.values():
                keys.update(value if isinstance(value, dict) else [f.target])
        else:
            keys.add(_RENAMED_OPTIONS.get(f.target, f.target))
    return keys


# standard_handler merges these options' dict values into the config...
_MERGED_OPTIONS = ("resources_per_worker", "profile")
# ...and renames this one (minutes become seconds).
_RENAMED_OPTIONS = {"idle_timeout_minutes": "idle_timeout"}


def standard_handler(options: dict[str, Any]) -> dict[str, Any]:
    """Turn the ready-made fields' values into a flat cluster config.

    ``worker_memory`` (GiB) becomes bytes, ``idle_timeout_minutes`` becomes
    ``idle_timeout`` seconds, a ``resources_per_worker`` or ``profile`` whose value is
    a dict is merged in; every other option passes through under its own name.
    """
    config: dict[str, Any] = {}
    for key, value in options.items():
        if key in _MERGED_OPTIONS and isinstance(value, dict):
            config.update(value)
        elif key == "worker_memory":
            config["worker_memory"] = int(value * GiB)
        elif key == "idle_timeout_minutes":
            config["idle_timeout"] = int(value) * 60
        else:
            config[key] = value
    return config
