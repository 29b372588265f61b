"""The service's side: an ``OptionSet`` of fields with the handler that turns a user's
options into a cluster's configuration, and ``resolve_option_set`` for per-user sets."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from ..cluster_names import DISPLAY_NAME_OPTION
from .fields import KIND_WORDS, Field, field_list, kind_of
from .standard import standard_handler, standard_handler_keys

__all__ = ["Handler", "OptionSet", "OptionSetError", "OptionsError", "resolve_option_set"]


class OptionsError(ValueError):
    """Cluster options a user asked for are not acceptable; the text says why."""


class OptionSetError(TypeError):
    """The operator's option set is wrong (a cluster_options callable that returns no
    OptionSet, a handler that returns no dict): not the user's doing."""


class _AttrDict(dict):
    """The handler's view of options: ``options.worker_cores`` or ``options["..."]``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"No option {key!r}; available: {field_list(self)}") from None


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
                f"got {kind_of(request_options)}"
            )
        unknown = [k for k in request_options if k not in self._by_name]
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            noun = "option" if len(unknown) == 1 else "options"
            raise OptionsError(
                f"Unknown {noun} {names}; available options: {field_list(self._by_name)}"
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
