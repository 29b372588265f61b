"""A gateway's clusters as the gateway widget lists and drives them. No ipywidgets here:
``list_states`` also serves the text and HTML fallbacks."""

from __future__ import annotations

from typing import Any

from .sources import attr
from .state import ClusterState


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


def may_block(gateway: Any) -> bool:
    """Whether this thread may wait for ``gateway``'s blocking API."""
    if attr(gateway, "asynchronous"):
        return False
    in_loop = attr(gateway, "_in_loop_thread")
    return not (callable(in_loop) and in_loop())
