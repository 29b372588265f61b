"""The client's side: ``Options``, the mapping of values a user fills in for a new
cluster, checked as they are set by the same fields the service uses."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from .fields import Field, field_list

__all__ = ["Options"]


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
                f"No option {key!r} available; available options: {field_list(self._fields)}"
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
