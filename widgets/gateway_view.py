"""The gateway widget: the user's clusters, each with the cluster widget's controls.

Imports ipywidgets: made through ``hubgate.widgets.gateway_widget``, which returns None
without it.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as ipw

from . import refresh
from .base import FallbackDisplay, error_html, guarded, logger
from .cluster_view import ClusterWidget
from .gateway_clusters import GatewayClusterHandle, list_states, may_block
from .sources import listing_source
from .state import ClusterState, gateway_html, gateway_text

__all__ = ["GatewayWidget"]

CLOSED_MESSAGE = "The gateway client was closed; the list is no longer refreshed."


class GatewayWidget(FallbackDisplay, refresh.Subscriber, ipw.VBox):
    """The user's clusters, one ``ClusterWidget`` card each. One listing loop per gateway
    refreshes them all (the cards have no loops of their own), while a view is shown."""

    def __init__(self, gateway: Any, *, refresh_interval: float | None = 5.0) -> None:
        self.gateway = gateway
        self.refresh_interval = refresh_interval
        self._source = listing_source(gateway) if refresh_interval else None
        self._subscription: refresh.Subscription | None = None
        self._closed = False
        self._refresh_error_shown = False
        self.cards: dict[str, ClusterWidget] = {}
        self.states: list[ClusterState] = []
        self.message = ipw.HTML()
        self.empty = ipw.HTML(
            "<p>No clusters running. Create one with <code>gateway.new_cluster()</code>.</p>"
        )
        self.refresh_button = ipw.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(
            guarded("Refresh", self._show_message)(lambda _: self.refresh_soon())
        )
        self.header = ipw.HBox([ipw.HTML("<h3>Dask clusters</h3>"), self.refresh_button])
        # _view_count=0: the frontends count their views; the list refreshes while
        # one is shown (see the cluster widget).
        tracking = {"_view_count": 0} if self._source is not None else {}
        super().__init__(children=[self.header, self.message], **tracking)
        if may_block(gateway):
            # One listing now, so that every display (the HTML fallback too) has it.
            try:
                self.refresh()
            except Exception as exc:
                logger.exception("Listing clusters failed")
                self._show_message(f"Could not list your clusters: {exc}")
        if self._source is not None:
            self.observe(self._views_changed, names="_view_count")

    def fallback_text(self) -> str:
        return gateway_text(self.states)

    def fallback_html(self) -> str:
        return gateway_html(self.states)

    def _show_message(self, text: str) -> None:
        self.message.value = error_html(text) if text else ""

    def refresh(self) -> None:
        """List the clusters now, in this thread (a blocking request)."""
        if self._source is not None:
            self.show(self.gateway.sync(self._source.fetch))  # the loop's own request
        else:
            self.show(list_states(self.gateway))

    def refresh_soon(self) -> None:
        """List again: through the refresh loop when it runs, else now."""
        if self._subscription is not None:
            refresh.refresh_now(self._subscription)
        elif may_block(self.gateway):
            self.refresh()

    def show(self, states: list[ClusterState]) -> None:
        """Update known cards, add new ones, drop gone ones."""
        self.states = states
        seen = set()
        for state in states:
            seen.add(state.name)
            card = self.cards.get(state.name)
            if card is None:
                handle = GatewayClusterHandle(self.gateway, state.name)
                # Cards are refreshed by this widget's listing, not loops of their own.
                self.cards[state.name] = ClusterWidget(
                    handle, state=state, refresh_interval=None, after_action=self.refresh_soon
                )
            else:
                card.update(state)
        for name in [n for n in self.cards if n not in seen]:
            self.cards.pop(name).close()
        body = [self.cards[s.name] for s in states] or [self.empty]
        self.children = [self.header, self.message, *body]

    # refreshing (refresh.Subscriber) -------------------------------------------------
    def _may_refresh(self) -> bool:
        return not self._closed

    # refresh.Viewer: called on the gateway's loop thread
    def refreshed(self, states: list[ClusterState]) -> None:
        if self._refresh_error_shown:
            self._refresh_error_shown = False
            self._show_message("")
        self.show(states)

    def refresh_failed(self, exc: Exception) -> None:
        self._refresh_error_shown = True
        self._show_message(f"Could not list your clusters: {exc}")

    def refresh_ended(self, reason: str) -> None:
        self._subscription = None
        self.refresh_button.disabled = True
        for card in self.cards.values():
            card.disable("")
        self._show_message(CLOSED_MESSAGE)

    def close(self) -> None:
        self._closed = True
        self.stop_refresh()
        for card in self.cards.values():
            card.close()
        super().close()
