"""The cluster options form: one input per option field, validated as the user types."""

from __future__ import annotations

import functools
import html
import weakref
from typing import Any

from .base import FallbackDisplay, error_html, load_ipywidgets, logger
from .fields import (
    check_input,
    current_values,
    field_constraint,
    field_help,
    field_kind,
    field_label,
    mapping_text,
    option_fields,
    select_options,
)


def _number_text(value: Any) -> str:
    return "" if value is None else str(value)


def _display_value(kind: str, value: Any) -> Any:
    if kind in ("int", "float"):
        return _number_text(value)
    if kind == "mapping":
        return mapping_text(value)
    if kind == "bool":
        return bool(value)
    return "" if value is None else value


def options_text(options: Any) -> str:
    fields = option_fields(options)
    values = current_values(options, fields)
    lines = ["Cluster options"]
    for f in fields:
        help_text = field_help(f)
        lines.append(
            f"  {field_label(f)}: {values[f.field]!r}" + (f"  ({help_text})" if help_text else "")
        )
    return "\n".join(lines)


def options_html(options: Any) -> str:
    esc = html.escape
    fields = option_fields(options)
    values = current_values(options, fields)
    rows = "".join(
        f"<tr><th style='text-align:left'>{esc(field_label(f))}</th>"
        f"<td><code>{esc(repr(values[f.field]))}</code></td>"
        f"<td><small>{esc(field_help(f))}</small></td></tr>"
        for f in fields
    )
    return f"<div><h4>Cluster options</h4><table>{rows}</table></div>"


@functools.cache
def _form_class(ipw: Any) -> type:
    class OptionsForm(FallbackDisplay, ipw.VBox):
        """The form; ``errors`` maps a field name to the message currently shown for it."""

        def __init__(self, options: Any) -> None:
            self.options = options
            self.errors: dict[str, str] = {}
            self.inputs: dict[str, Any] = {}
            self.messages: dict[str, Any] = {}
            fields = option_fields(options)
            values = current_values(options, fields)
            rows = [ipw.HTML("<h3>Cluster options</h3>")]
            self.kinds = {f.field: field_kind(f) for f in fields}
            self._fields = {f.field: f for f in fields}
            rows += [self._row(f, values[f.field]) for f in fields]
            super().__init__(children=rows)
            observe = getattr(type(options), "_observe", None)
            if callable(observe):
                # Values set in code (options.worker_cores = 2) show up in the form.
                method = weakref.WeakMethod(self._option_changed)
                observe(options, lambda name, value: (m := method()) and m(name, value))

        @property
        def valid(self) -> bool:
            return not self.errors

        def fallback_text(self) -> str:
            return options_text(self.options)

        def fallback_html(self) -> str:
            return options_html(self.options)

        def _option_changed(self, name: str, value: Any) -> None:
            entry, kind = self.inputs.get(name), self.kinds.get(name)
            if entry is None or kind is None:
                return
            shown = check_input(self._fields[name], kind, entry.value)
            if shown.ok and shown.value == value:
                return  # the form already shows it (the change came from the form)
            entry.value = _display_value(kind, value)

        def _input(self, field: Any, kind: str, value: Any) -> Any:
            layout = ipw.Layout(width="260px")
            if kind in ("int", "float"):
                lo, hi = field_constraint(field, "min"), field_constraint(field, "max")
                bounds = f"{'' if lo is None else lo} – {'' if hi is None else hi}"
                return ipw.Text(
                    value=_display_value(kind, value),
                    placeholder=bounds if (lo, hi) != (None, None) else "",
                    continuous_update=True,
                    layout=layout,
                )
            if kind == "bool":
                return ipw.Checkbox(value=bool(value), indent=False)
            if kind == "select":
                choices = select_options(field)
                return ipw.Dropdown(
                    options=choices, value=value if value in choices else None, layout=layout
                )
            if kind == "mapping":
                return ipw.Textarea(
                    value=mapping_text(value),
                    placeholder="NAME: value (YAML)",
                    continuous_update=True,
                    layout=layout,
                )
            return ipw.Text(
                value="" if value is None else str(value), continuous_update=True, layout=layout
            )

        def _row(self, field: Any, value: Any) -> Any:
            kind = field_kind(field)
            name = field.field
            label = ipw.HTML(
                f"<b>{html.escape(field_label(field))}</b>", layout=ipw.Layout(width="200px")
            )
            entry = self._input(field, kind, value)
            message = ipw.HTML("")
            self.inputs[name] = entry
            self.messages[name] = message

            def changed(change: dict[str, Any]) -> None:
                self.enter(name, field, kind, change["new"])

            entry.observe(changed, "value")
            parts = [ipw.HBox([label, entry]), message]
            help_text = field_help(field)
            if help_text:
                parts.append(
                    ipw.HTML(f"<small style='color:#666'>{html.escape(help_text)}</small>")
                )
            return ipw.VBox(parts, layout=ipw.Layout(margin="0 0 6px 0"))

        def enter(self, name: str, field: Any, kind: str, raw: Any) -> None:
            """Validate a new input value; keep it in the Options only when it is valid."""
            checked = check_input(field, kind, raw)
            error = checked.error
            if error is None:
                try:
                    self.options[name] = checked.value
                except (ValueError, TypeError) as exc:
                    error = str(exc)
                except Exception as exc:  # an Options bug must not break typing
                    logger.exception("Setting option %s failed", name)
                    error = f"Could not set {name}: {exc}"
            if error is None:
                self.errors.pop(name, None)
                self.messages[name].value = ""
            else:
                self.errors[name] = error
                self.messages[name].value = error_html(error)

    return OptionsForm


def options_widget(options: Any) -> Any | None:
    """The options form for ``options``; None when ipywidgets is not installed."""
    ipw = load_ipywidgets()
    if ipw is None:
        return None
    return _form_class(ipw)(options)
