"""``Field``, the base of every option type: its wire formats (dask-gateway's v1 spec,
hubgate's rich spec, the official client's fallback), its JSON Schema and form hints,
and its message templates; plus the small helpers those messages share."""

from __future__ import annotations

import copy
import inspect
from typing import Any, ClassVar, NoReturn

__all__ = [
    "FORM_INPUTS",
    "KIND_WORDS",
    "OFFICIAL_TYPES",
    "Field",
    "field_list",
    "kind_of",
    "number_text",
    "template_literal",
]


def number_text(value: Any) -> str:
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


def kind_of(value: Any) -> str:
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
        return number_text(self.value)

    def __repr__(self) -> str:
        return repr(self.value)


def field_list(fields: Any) -> str:
    """Option names for a message, or ``(none)``."""
    return ", ".join(fields) if fields else "(none)"


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
