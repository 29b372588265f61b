"""The cluster options as text and escaped HTML, for frontends without widgets (and
without ipywidgets installed)."""

from __future__ import annotations

import html
from typing import Any

from .fields import current_values, form_fields

__all__ = ["options_html", "options_text"]


def options_text(options: Any) -> str:
    fields = form_fields(options)
    values = current_values(options, fields)
    lines = ["Cluster options"]
    for f in fields:
        lines.append(f"  {f.label}: {values[f.name]!r}" + (f"  ({f.help})" if f.help else ""))
    return "\n".join(lines)


def options_html(options: Any) -> str:
    esc = html.escape
    fields = form_fields(options)
    values = current_values(options, fields)
    rows = "".join(
        f"<tr><th style='text-align:left'>{esc(f.label)}</th>"
        f"<td><code>{esc(repr(values[f.name]))}</code></td>"
        f"<td><small>{esc(f.help)}</small></td></tr>"
        for f in fields
    )
    return f"<div><h4>Cluster options</h4><table>{rows}</table></div>"
