"""Shared pieces of the widgets: is ipywidgets there, fallback display, guarded callbacks.

Nothing here imports ipywidgets, so the fallbacks work without it."""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("hubgate.widgets")


def ipywidgets_installed() -> bool:
    """Whether ipywidgets imports (else the factories return None and callers fall back
    to HTML). Asked apart from importing the widget modules, so that an ImportError of
    our own is raised, not mistaken for a missing ipywidgets."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class FallbackDisplay:
    """Mixin for a widget whose display degrades to readable text and escaped HTML.

    A frontend with a widget manager renders the widget view; one without (nbconvert,
    a terminal, a lab without ipywidgets' extension) shows the richest of the others.
    """

    def fallback_text(self) -> str:
        raise NotImplementedError

    def fallback_html(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        data = super()._repr_mimebundle_(**kwargs) or {}  # type: ignore[misc]
        data["text/plain"] = self.fallback_text()
        data["text/html"] = self.fallback_html()
        return data


def error_html(message: str) -> str:
    return f"<span style='color:#b00020'>{html.escape(message)}</span>"


def guarded(action: str, show: Callable[[str], None]) -> Callable[[Callable[..., Any]], Any]:
    """Decorate a button callback: log any error and show it in the widget."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                show("")
                return func(*args, **kwargs)
            except Exception as exc:
                logger.exception("%s failed", action)
                show(f"{action} failed: {exc}")
                return None

        return wrapper

    return decorate
