"""The cluster widget: live status, manual and adaptive scaling, dashboard, shutdown.

It works with anything cluster-like: ``name``; ``scale(n)``; ``adapt(minimum=, maximum=)``;
``shutdown()`` (or ``close()``); and for its state ``report()`` returning hubgate's Cluster
JSON or a ClusterReport, else ``gateway.get_cluster(name)`` (hubgate and dask-gateway
``GatewayCluster``), else ``status`` / ``dashboard_link`` / ``scheduler_info`` (``distributed``
clusters). A cluster with ``_scheduler_info_callbacks`` (hubgate's) also pushes live worker
changes to the widget between refreshes.
"""

from __future__ import annotations

import functools
import html
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .base import FallbackDisplay, error_html, guarded, load_ipywidgets, logger
from .state import ClusterState, cluster_html, cluster_text, summary_rows


def _attr(obj: Any, name: str) -> Any:
    # Properties of live clusters can fail (closed loop, lost connection): treat as absent.
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def read_state(cluster: Any) -> ClusterState:
    """The current state of a cluster-like object (may do a request to the service)."""
    report = _attr(cluster, "report")
    gateway = _attr(cluster, "gateway")
    if callable(report):
        state = ClusterState.from_report(report())
    elif gateway is not None and callable(_attr(gateway, "get_cluster")):
        # A hubgate/dask-gateway GatewayCluster: ask the service for the full record.
        state = ClusterState.from_report(gateway.get_cluster(cluster.name))
    else:
        status = _attr(cluster, "status")
        state = ClusterState.from_report({"name": _attr(cluster, "name"), "status": status})
    link = _attr(cluster, "dashboard_link")
    if link and not state.dashboard_link:
        state = replace(state, dashboard_link=str(link))
    if state.workers_running is None:
        info = _attr(cluster, "scheduler_info")
        if isinstance(info, dict):
            state = state.with_scheduler_info(info)
    return state


class RefreshTimer:
    """Calls ``tick`` every ``interval`` seconds in a daemon thread until stopped."""

    def __init__(self, interval: float, tick: Callable[[], bool]) -> None:
        self._interval = interval
        self._tick = tick
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="hubgate-widget-refresh", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            if not self._tick():
                return

    def stop(self) -> None:
        self._stopped.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopped.is_set()


def _summary_html(state: ClusterState) -> str:
    cells = "".join(
        f"<td style='padding-right:1.5em'><small>{html.escape(label)}</small><br>"
        f"<b>{html.escape(value)}</b></td>"
        for label, value in summary_rows(state)
    )
    return f"<table><tr>{cells}</tr></table>"


@functools.cache
def _cluster_class(ipw: Any) -> type:
    class ClusterWidget(FallbackDisplay, ipw.VBox):
        def __init__(
            self,
            cluster: Any,
            *,
            state: ClusterState | None = None,
            refresh_interval: float | None = 2.0,
        ) -> None:
            self.cluster = cluster
            self.state = state or ClusterState(name=str(_attr(cluster, "name") or ""))
            self._timer: RefreshTimer | None = None
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
            super().__init__(
                children=[
                    self.title,
                    self.summary,
                    self.progress,
                    self.failure,
                    self.scaling,
                    ipw.HBox([self.dashboard, self.shutdown_button]),
                    self.message,
                ]
            )
            if state is None:
                self.refresh()
            else:
                self.update(state)
            if refresh_interval and not self.state.final:
                self._timer = RefreshTimer(refresh_interval, self._tick)
            self._info_callbacks = _attr(cluster, "_scheduler_info_callbacks")
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
            self.title.value = f"<h3>Cluster {html.escape(state.name)}</h3>"
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
                control.disabled = state.final
            if state.final:
                self.stop_refresh()

        def refresh(self) -> None:
            try:
                self.update(read_state(self.cluster))
            except Exception as exc:
                logger.exception("Refreshing cluster %s failed", self.state.name)
                self._show_message(f"Could not refresh the cluster's status: {exc}")

        def _tick(self) -> bool:
            self.refresh()
            return not self.state.final

        def stop_refresh(self) -> None:
            if self._timer is not None:
                self._timer.stop()
                self._timer = None

        def _on_scheduler_info(self, info: dict[str, Any]) -> None:
            if not self.state.final:
                self.update(self.state.with_scheduler_info(info))

        def close(self) -> None:
            self.stop_refresh()
            if (
                isinstance(self._info_callbacks, list)
                and self._on_scheduler_info in self._info_callbacks
            ):
                self._info_callbacks.remove(self._on_scheduler_info)
            super().close()

        # actions ------------------------------------------------------------------
        def scale(self) -> None:
            count = self.workers.value
            if count < 0:
                raise ValueError("the number of workers must be 0 or more")
            self.cluster.scale(count)
            self.refresh()

        def adapt(self) -> None:
            minimum, maximum = self.minimum.value, self.maximum.value
            if minimum < 0 or maximum < minimum:
                raise ValueError("enter 0 <= minimum <= maximum")
            self.cluster.adapt(minimum=minimum, maximum=maximum)
            self.refresh()

        def shutdown(self) -> None:
            stop = _attr(self.cluster, "shutdown") or self.cluster.close
            stop()
            self.refresh()

    return ClusterWidget


def cluster_widget(
    cluster: Any, *, state: ClusterState | None = None, refresh_interval: float | None = 2.0
) -> Any | None:
    """The widget for one cluster; None when ipywidgets is not installed.

    ``refresh_interval`` seconds between status refreshes (None: never; the timer stops
    when the widget is closed or the cluster is stopped or failed).
    """
    ipw = load_ipywidgets()
    if ipw is None:
        return None
    return _cluster_class(ipw)(cluster, state=state, refresh_interval=refresh_interval)
