"""The cluster options form: one input per option field, validated as the user types.

Built from the fields' schema (``widgets/fields.py``): the input follows the field's
``ui:options`` ``input``, so a new field type needs no change here. Imports ipywidgets:
made through ``hubgate.widgets.options_widget``, which returns None without it."""

from __future__ import annotations

import html
import weakref
from typing import Any

import ipywidgets as ipw

from .base import FallbackDisplay, error_html, logger
from .fields import FormField, check_input, current_values, form_fields, mapping_text
from .options_fallback import options_html, options_text

__all__ = ["OptionsForm"]


def _display_value(input_kind: str, value: Any) -> Any:
    if input_kind == "yaml":
        return mapping_text(value)
    if input_kind == "checkbox":
        return bool(value)
    return "" if value is None else str(value)


class OptionsForm(FallbackDisplay, ipw.VBox):
    """The form; ``errors`` maps a field name to the message currently shown for it."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.errors: dict[str, str] = {}
        self.inputs: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        fields = form_fields(options)
        values = current_values(options, fields)
        rows = [ipw.HTML("<h3>Cluster options</h3>")]
        self._fields = {f.name: f for f in fields}
        rows += [self._row(f, values[f.name]) for f in fields]
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
        entry, form_field = self.inputs.get(name), self._fields.get(name)
        if entry is None or form_field is None:
            return
        shown = check_input(form_field, entry.value)
        if shown.ok and shown.value == value:
            return  # the form already shows it (the change came from the form)
        entry.value = _display_value(form_field.input, value)

    def _input(self, field: FormField, value: Any) -> Any:
        layout = ipw.Layout(width="260px")
        kind = field.input
        if kind == "number":
            lo, hi = field.bounds
            bounds = f"{'' if lo is None else lo} – {'' if hi is None else hi}"
            return ipw.Text(
                value=_display_value(kind, value),
                placeholder=bounds if (lo, hi) != (None, None) else "",
                continuous_update=True,
                layout=layout,
            )
        if kind == "checkbox":
            return ipw.Checkbox(value=bool(value), indent=False)
        if kind == "choice":
            choices = field.choices
            return ipw.Dropdown(
                options=choices, value=value if value in choices else None, layout=layout
            )
        if kind == "yaml":
            return ipw.Textarea(
                value=mapping_text(value),
                placeholder="NAME: value (YAML)",
                continuous_update=True,
                layout=layout,
            )
        return ipw.Text(
            value="" if value is None else str(value), continuous_update=True, layout=layout
        )

    def _row(self, field: FormField, value: Any) -> Any:
        name = field.name
        label = ipw.HTML(f"<b>{html.escape(field.label)}</b>", layout=ipw.Layout(width="200px"))
        entry = self._input(field, value)
        message = ipw.HTML("")
        self.inputs[name] = entry
        self.messages[name] = message

        def changed(change: dict[str, Any]) -> None:
            self.enter(name, change["new"])

        entry.observe(changed, "value")
        parts = [ipw.HBox([label, entry]), message]
        help_text = field.help
        if help_text:
            parts.append(ipw.HTML(f"<small style='color:#666'>{html.escape(help_text)}</small>"))
        return ipw.VBox(parts, layout=ipw.Layout(margin="0 0 6px 0"))

    def enter(self, name: str, raw: Any) -> None:
        """Validate a new input value; keep it in the Options only when it is valid."""
        checked = check_input(self._fields[name], raw)
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
