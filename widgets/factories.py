"""The widgets for the client's ``_ipython_display_``: one function per widget, returning
None when ipywidgets is not installed (the caller then shows its HTML repr).

The widget classes live in modules that import ipywidgets at their top; these functions
import those modules only when a widget is asked for, so ``hubgate.widgets`` and its text
and HTML fallbacks import without ipywidgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import ipywidgets_installed
from .state import ClusterState

if TYPE_CHECKING:
    from .cluster_view import ClusterWidget
    from .gateway_view import GatewayWidget
    from .options_form import OptionsForm

__all__ = ["cluster_widget", "gateway_widget", "options_widget"]


def cluster_widget(
    cluster: Any,
    *,
    state: ClusterState | None = None,
    refresh_interval: float | None = 2.0,
) -> ClusterWidget | None:
    """The widget for one cluster; None when ipywidgets is not installed.

    ``refresh_interval``: seconds between status refreshes while the widget is shown
    (None: never). However many widgets show one cluster, one loop refreshes it.
    """
    if not ipywidgets_installed():
        return None
    from .cluster_view import ClusterWidget

    return ClusterWidget(cluster, state=state, refresh_interval=refresh_interval)


def gateway_widget(gateway: Any, *, refresh_interval: float | None = 5.0) -> GatewayWidget | None:
    """The user's clusters with their controls; None when ipywidgets is not installed.

    ``refresh_interval``: seconds between listings while the widget is shown (None:
    never); one loop per gateway however many widgets show it.
    """
    if not ipywidgets_installed():
        return None
    from .gateway_view import GatewayWidget

    return GatewayWidget(gateway, refresh_interval=refresh_interval)


def options_widget(options: Any) -> OptionsForm | None:
    """The options form for ``options``; None when ipywidgets is not installed."""
    if not ipywidgets_installed():
        return None
    from .options_form import OptionsForm

    return OptionsForm(options)
