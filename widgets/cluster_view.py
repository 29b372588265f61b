"""The cluster widget: live status, manual and adaptive scaling, dashboard, shutdown.

It works with anything cluster-like (see ``sources``): ``name``; ``scale(n)``;
``adapt(minimum=, maximum=)``; ``shutdown()`` (or ``close()``). While at least one view
of it is displayed (ipywidgets' ``_view_count``) it refreshes through the cluster's
shared loop (``refresh``); clearing the output, closing the widget, the cluster
stopping or failing and the client closing all end that. A cluster with
``_scheduler_info_callbacks`` (hubgate's) also pushes live worker changes to the
widget between refreshes.
"""

from __future__ import annotations

import functools
import html
from typing import Any

from . import refresh
from .base import FallbackDisplay, error_html, guarded, load_ipywidgets, logger
from .sources import attr, cluster_source, initial_state, read_state
from .state import ClusterState, cluster_html, cluster_text, summary_rows, title_html

__all__ = ["cluster_widget", "read_state"]

# Why a refresh ended (refresh.Viewer.refresh_ended), as the widget says it.
ENDED_MESSAGES = {
    "closed": "The cluster's client was closed; its status is no longer refreshed.",
    "gone": "The service no longer knows this cluster.",
}


def _summary_html(state: ClusterState) -> str:
    cells = "".join(
        f"<td style='padding-right:1.5em'><small>{html.escape(label)}</small><br>"
        f"<b>{html.escape(value)}</b></td>"
        for label, value in summary_rows(state)
    )
    return f"<table><tr>{cells}</tr></table>"


@functools.cache
def _cluster_class(ipw: Any) -> type:
    class ClusterWidget(FallbackDisplay, refresh.Subscriber, ipw.VBox):
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
            # Who refreshes after a button's action (the gateway widget for its cards).
            self._after_action = after_action
            self._ended = False  # the client closed or the cluster is gone: no controls
            self._closed = False
            self._refresh_error_shown = False
            self._info_callbacks: Any = None
            self.title = ipw.HTML()
            self.summary = ipw.HTML()
            self.progress = ipw.IntProgress(
                value=0, min=0, max=1, description="Starting", bar_style="info"
            )
            self.failure = ipw.HTML()
            self.dashboard = ipw.HTML()
            self.message = ipw.HTML()

            self.workers = ipw.IntText(
                value=0, description="Workers", layout=ipw.Layout(width="180px")
            )
            self.scale_button = ipw.Button(description="Scale", button_style="primary")
            self.minimum = ipw.IntText(
                value=0, description="Minimum", layout=ipw.Layout(width="180px")
            )
            self.maximum = ipw.IntText(
                value=4, description="Maximum", layout=ipw.Layout(width="180px")
            )
            self.adapt_button = ipw.Button(description="Adapt", button_style="primary")
            self.shutdown_button = ipw.Button(description="Shutdown", button_style="danger")
            self.scaling = ipw.Accordion(
                children=[
                    ipw.HBox([self.workers, self.scale_button]),
                    ipw.HBox([self.minimum, self.maximum, self.adapt_button]),
                ],
                titles=("Manual scaling", "Adaptive scaling"),
            )
            show = self._show_message
            self.scale_button.on_click(guarded("Scale", show)(lambda _: self.scale()))
            self.adapt_button.on_click(guarded("Adapt", show)(lambda _: self.adapt()))
            self.shutdown_button.on_click(guarded("Shutdown", show)(lambda _: self.shutdown()))
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

        # display ------------------------------------------------------------------
        def fallback_text(self) -> str:
            return cluster_text(self.state)

        def fallback_html(self) -> str:
            return cluster_html(self.state)

        def _show_message(self, text: str) -> None:
            self.message.value = error_html(text) if text else ""

        def update(self, state: ClusterState) -> None:
            """Show ``state``; stops refreshing once the cluster is stopped or failed."""
            self.state = state
            self.title.value = f"<h3>{title_html(state)}</h3>"
            self.summary.value = _summary_html(state)
            requested = state.workers_requested or 0
            starting = state.status == "PENDING" or (state.workers_running or 0) < requested
            self.progress.layout.display = "" if starting and not state.final else "none"
            self.progress.max = max(requested, 1)
            self.progress.value = min(state.workers_running or 0, self.progress.max)
            self.progress.description = "Starting" if state.status == "PENDING" else "Workers"
            if state.status == "FAILED":
                reason = state.reason or "no reason was given; see the cluster's logs"
                self.failure.value = (
                    "<div style='border:1px solid #b00020;padding:6px;color:#b00020'>"
                    f"<b>Cluster failed:</b> {html.escape(reason)}</div>"
                )
            else:
                self.failure.value = ""
            if state.dashboard_link and not state.final:
                link = html.escape(state.dashboard_link, quote=True)
                self.dashboard.value = (
                    f"<a href='{link}' target='_blank' rel='noopener'>Dashboard</a>"
                )
            else:
                self.dashboard.value = ""
            for control in (self.scale_button, self.adapt_button, self.shutdown_button):
                control.disabled = state.final or self._ended
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

        # refreshing (refresh.Subscriber) ---------------------------------------------
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

        # actions ------------------------------------------------------------------
        def _refresh_after_action(self) -> None:
            if self._after_action is not None:
                self._after_action()
            elif self._subscription is not None:
                refresh.refresh_now(self._subscription)
            elif self._source is None:
                self.refresh()

        def scale(self) -> None:
            count = self.workers.value
            if count < 0:
                raise ValueError("the number of workers must be 0 or more")
            self.cluster.scale(count)
            self._refresh_after_action()

        def adapt(self) -> None:
            minimum, maximum = self.minimum.value, self.maximum.value
            if minimum < 0 or maximum < minimum:
                raise ValueError("enter 0 <= minimum <= maximum")
            self.cluster.adapt(minimum=minimum, maximum=maximum)
            self._refresh_after_action()

        def shutdown(self) -> None:
            stop = attr(self.cluster, "shutdown") or self.cluster.close
            stop()
            if self._after_action is not None:
                self._after_action()
            else:
                # A closed GatewayCluster or distributed cluster says so itself.
                self._read_from_object()

    return ClusterWidget


def cluster_widget(
    cluster: Any,
    *,
    state: ClusterState | None = None,
    refresh_interval: float | None = 2.0,
) -> Any | None:
    """The widget for one cluster; None when ipywidgets is not installed.

    ``refresh_interval``: seconds between status refreshes while the widget is shown
    (None: never). However many widgets show one cluster, one loop refreshes it.
    """
    ipw = load_ipywidgets()
    if ipw is None:
        return None
    return _cluster_class(ipw)(cluster, state=state, refresh_interval=refresh_interval)
