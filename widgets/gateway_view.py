"""The gateway widget: the user's clusters, each with the cluster widget's controls."""

from __future__ import annotations

import functools
from typing import Any

from .base import FallbackDisplay, error_html, guarded, load_ipywidgets, logger
from .cluster_view import RefreshTimer, _cluster_class
from .state import ClusterState, gateway_html, gateway_text


class GatewayClusterHandle:
    """A cluster known only by name, driven through the Gateway's by-name methods."""

    def __init__(self, gateway: Any, name: str) -> None:
        self.gateway = gateway
        self.name = name

    def report(self) -> Any:
        return self.gateway.get_cluster(self.name)

    def scale(self, count: int) -> None:
        self.gateway.scale_cluster(self.name, count)

    def adapt(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.gateway.adapt_cluster(self.name, minimum=minimum, maximum=maximum)

    def shutdown(self) -> None:
        self.gateway.stop_cluster(self.name)


def list_states(gateway: Any) -> list[ClusterState]:
    return [ClusterState.from_report(report) for report in gateway.list_clusters()]


@functools.cache
def _gateway_class(ipw: Any) -> type:
    cluster_class = _cluster_class(ipw)

    class GatewayWidget(FallbackDisplay, ipw.VBox):
        def __init__(self, gateway: Any, *, refresh_interval: float | None = 5.0) -> None:
            self.gateway = gateway
            self.cards: dict[str, Any] = {}
            self.states: list[ClusterState] = []
            self.message = ipw.HTML()
            self.empty = ipw.HTML(
                "<p>No clusters running. Create one with <code>gateway.new_cluster()</code>.</p>"
            )
            self.refresh_button = ipw.Button(description="Refresh", icon="refresh")
            self.refresh_button.on_click(
                guarded("Refresh", self._show_message)(lambda _: self.refresh())
            )
            self.header = ipw.HBox([ipw.HTML("<h3>Dask clusters</h3>"), self.refresh_button])
            super().__init__(children=[self.header, self.message])
            self._timer: RefreshTimer | None = None
            try:
                self.refresh()
            except Exception as exc:
                logger.exception("Listing clusters failed")
                self._show_message(f"Could not list your clusters: {exc}")
            if refresh_interval:
                self._timer = RefreshTimer(refresh_interval, self._tick)

        def fallback_text(self) -> str:
            return gateway_text(self.states)

        def fallback_html(self) -> str:
            return gateway_html(self.states)

        def _show_message(self, text: str) -> None:
            self.message.value = error_html(text) if text else ""

        def refresh(self) -> None:
            """List the clusters again: update known cards, add new ones, drop gone ones."""
            self.states = list_states(self.gateway)
            seen = set()
            for state in self.states:
                seen.add(state.name)
                card = self.cards.get(state.name)
                if card is None:
                    handle = GatewayClusterHandle(self.gateway, state.name)
                    self.cards[state.name] = cluster_class(
                        handle, state=state, refresh_interval=None
                    )
                else:
                    card.update(state)
            for name in [n for n in self.cards if n not in seen]:
                self.cards.pop(name).close()
            body = [self.cards[s.name] for s in self.states] or [self.empty]
            self.children = [self.header, self.message, *body]

        def _tick(self) -> bool:
            try:
                self.refresh()
                self._show_message("")
            except Exception as exc:
                logger.exception("Listing clusters failed")
                self._show_message(f"Could not list your clusters: {exc}")
            return True

        def close(self) -> None:
            if self._timer is not None:
                self._timer.stop()
                self._timer = None
            for card in self.cards.values():
                card.close()
            super().close()

    return GatewayWidget


def gateway_widget(gateway: Any, *, refresh_interval: float | None = 5.0) -> Any | None:
    """The user's clusters with their controls; None when ipywidgets is not installed."""
    ipw = load_ipywidgets()
    if ipw is None:
        return None
    return _gateway_class(ipw)(gateway, refresh_interval=refresh_interval)
