"""The cluster widget: live status, manual and adaptive scaling, dashboard, shutdown.

It works with anything cluster-like (see ``sources``): ``name``; ``scale(n)``;
``adapt(minimum=, maximum=)``; ``shutdown()`` (or ``close()``). While at least one view
of it is displayed (ipywidgets' ``_view_count``) it refreshes through the cluster's
shared loop (``refresh``); clearing the output, closing the widget, the cluster
stopping or failing and the client closing all end that. A cluster with
``_scheduler_info_callbacks`` (hubgate's) also pushes live worker changes to the
widget between refreshes.

Imports ipywidgets: made through ``hubgate.widgets.cluster_widget``, which returns None
without it.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as ipw

from . import refresh
from .base import FallbackDisplay, error_html, guarded, logger
from .cluster_status import ClusterStatusView
from .scaling_controls import ScalingControls
from .sources import attr, cluster_source, initial_state, read_state
from .state import ClusterState, cluster_html, cluster_text

__all__ = ["ClusterWidget"]

# Why a refresh ended (refresh.Viewer.refresh_ended), as the widget says it.
ENDED_MESSAGES = {
    "closed": "The cluster's client was closed; its status is no longer refreshed.",
    "gone": "The service no longer knows this cluster.",
}


class ClusterWidget(FallbackDisplay, refresh.Subscriber, ipw.VBox):
    """One cluster: its status (``ClusterStatusView``), its scaling controls
    (``ScalingControls``), Shutdown, and its membership of the cluster's refresh loop.
    ``after_action``: who refreshes after a button's action instead of this widget (the
    gateway widget, for its cards)."""

    def __init__(
        self,
        cluster: Any,
        *,
        state: ClusterState | None = None,
        refresh_interval: float | None = 2.0,
        after_action: Any = None,
    ) -> None:
        self.cluster = cluster
        self.refresh_interval = refresh_interval
        self._source = cluster_source(cluster) if refresh_interval else None
        self._subscription: refresh.Subscription | None = None
        self._after_action = after_action
        self._ended = False  # the client closed or the cluster is gone: no controls
        self._closed = False
        self._refresh_error_shown = False
        self._info_callbacks: Any = None
        self.message = ipw.HTML()
        self.status = ClusterStatusView()
        self.scaling = ScalingControls(
            cluster, show_message=self._show_message, after_action=self._refresh_after_action
        )
        self.shutdown_button = ipw.Button(description="Shutdown", button_style="danger")
        self.shutdown_button.on_click(
            guarded("Shutdown", self._show_message)(lambda _: self.shutdown())
        )
        status, scaling = self.status, self.scaling
        # The parts' widgets, also under the names the cluster widget had before its split.
        self.title, self.summary, self.progress = status.title, status.summary, status.progress
        self.failure, self.dashboard = status.failure, status.dashboard
        self.workers, self.minimum, self.maximum = scaling.workers, scaling.minimum, scaling.maximum
        self.scale_button, self.adapt_button = scaling.scale_button, scaling.adapt_button
        # _view_count=0 asks the frontends to count their views of this widget: it
        # refreshes only while one is shown (an output cleared removes its view).
        tracking = {"_view_count": 0} if self._source is not None else {}
        super().__init__(
            children=[
                self.title,
                self.summary,
                self.progress,
                self.failure,
                self.scaling,
                ipw.HBox([self.dashboard, self.shutdown_button]),
                self.message,
            ],
            **tracking,
        )
        self.state = ClusterState(name=str(attr(cluster, "name") or ""))
        if state is None:
            self._read_from_object()
        else:
            self.update(state)
        if self._source is not None:
            self.observe(self._views_changed, names="_view_count")
        self._info_callbacks = attr(cluster, "_scheduler_info_callbacks")
        if isinstance(self._info_callbacks, list):
            self._info_callbacks.append(self._on_scheduler_info)

    # display ----------------------------------------------------------------------
    def fallback_text(self) -> str:
        return cluster_text(self.state)

    def fallback_html(self) -> str:
        return cluster_html(self.state)

    def _show_message(self, text: str) -> None:
        self.message.value = error_html(text) if text else ""

    def update(self, state: ClusterState) -> None:
        """Show ``state``; stops refreshing once the cluster is stopped or failed."""
        self.state = state
        self.status.show(state)
        controls_off = state.final or self._ended
        self.scaling.set_disabled(controls_off)
        self.shutdown_button.disabled = controls_off
        if state.final:
            self.stop_refresh()

    def refresh(self) -> None:
        """Read the state now, in this thread (a request for a GatewayCluster)."""
        try:
            self.update(read_state(self.cluster))
        except Exception as exc:
            logger.exception("Refreshing cluster %s failed", self.state.name)
            self._show_message(f"Could not refresh the cluster's status: {exc}")

    def _read_from_object(self) -> None:
        # Without a request to a service (a GatewayCluster's own fields).
        try:
            self.update(initial_state(self.cluster))
        except Exception as exc:
            logger.exception("Reading cluster %s failed", self.state.name)
            self._show_message(f"Could not read the cluster's status: {exc}")

    # refreshing (refresh.Subscriber) --------------------------------------------------
    def _may_refresh(self) -> bool:
        return not (self._closed or self._ended or self.state.final)

    # refresh.Viewer: called on the client's loop thread
    def refreshed(self, state: ClusterState) -> None:
        if self._refresh_error_shown:
            self._refresh_error_shown = False
            self._show_message("")
        self.update(state)

    def refresh_failed(self, exc: Exception) -> None:
        self._refresh_error_shown = True
        self._show_message(f"Could not refresh the cluster's status: {exc}")

    def refresh_ended(self, reason: str) -> None:
        self._subscription = None
        if reason not in ENDED_MESSAGES:
            return  # final: update() already shows it
        self._read_from_object()
        if not self.state.final:
            self.disable(ENDED_MESSAGES[reason])

    def disable(self, message: str) -> None:
        """Turn the controls off for good, saying why (the client is closed)."""
        self._ended = True
        self.stop_refresh()
        self.update(self.state)
        self._show_message(message)

    def _on_scheduler_info(self, info: dict[str, Any]) -> None:
        if not self.state.final:
            self.update(self.state.with_scheduler_info(info))

    def close(self) -> None:
        self._closed = True
        self.stop_refresh()
        if (
            isinstance(self._info_callbacks, list)
            and self._on_scheduler_info in self._info_callbacks
        ):
            self._info_callbacks.remove(self._on_scheduler_info)
        super().close()

    # actions ----------------------------------------------------------------------
    def _refresh_after_action(self) -> None:
        if self._after_action is not None:
            self._after_action()
        elif self._subscription is not None:
            refresh.refresh_now(self._subscription)
        elif self._source is None:
            self.refresh()

    def shutdown(self) -> None:
        stop = attr(self.cluster, "shutdown") or self.cluster.close
        stop()
        if self._after_action is not None:
            self._after_action()
        else:
            # A closed GatewayCluster or distributed cluster says so itself.
            self._read_from_object()
