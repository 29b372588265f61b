"""How a ``Gateway`` or ``GatewayCluster`` shows itself in a notebook: its widget when
ipywidgets is installed, else its HTML repr."""

from __future__ import annotations

from typing import Any

__all__ = ["show"]


def show(obj: Any, widget_factory: str, **kwargs: Any) -> None:
    """Show ``hubgate.widgets.<widget_factory>(obj)`` if possible, else the HTML repr."""
    from IPython.display import display

    widget = None
    try:
        import ipywidgets  # noqa: F401

        from hubgate import widgets

        factory = getattr(widgets, widget_factory, None)
        widget = factory(obj) if factory is not None else None
    except ImportError:
        widget = None
    if widget is not None:
        display(widget, **kwargs)
    else:
        display({"text/plain": repr(obj), "text/html": obj._repr_html_()}, raw=True)
