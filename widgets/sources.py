"""What the widgets show and refresh, read from whatever the caller has.

A cluster-like object is one of: a ``GatewayCluster`` (hubgate's or dask-gateway's: its
``gateway`` has the async ``_cluster_report``), a ``distributed`` cluster (``status``,
``scheduler_info`` and an event ``loop``), or anything with a ``report()`` returning
hubgate's Cluster JSON or a ClusterReport. The first two can be refreshed on their own
event loop (``cluster_source``); the last only when the widget acts or is asked to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import replace
from typing import Any

from . import refresh
from .refresh import Source
from .state import ClusterState

# GatewayCluster.status (hubgate's and dask-gateway's) as the widgets name it.
_LOCAL_STATUS = {
    "created": "PENDING",
    "starting": "PENDING",
    "running": "RUNNING",
    "closing": "CLOSED",
    "closed": "CLOSED",
}


def attr(obj: Any, name: str) -> Any:
    """``obj.name`` or None; properties of live clusters can fail (closed loop, lost
    connection), which counts as absent."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def with_local_details(state: ClusterState, cluster: Any) -> ClusterState:
    """Fill what the service's report lacks from the object: dashboard link, live
    worker counts (``scheduler_info``)."""
    link = attr(cluster, "dashboard_link")
    if link and not state.dashboard_link:
        state = replace(state, dashboard_link=str(link))
    display_name = attr(cluster, "display_name")
    if isinstance(display_name, str) and display_name and not state.display_name:
        state = replace(state, display_name=display_name)
    if state.workers_running is None:
        info = attr(cluster, "scheduler_info")
        if isinstance(info, dict):
            state = state.with_scheduler_info(info)
    return state


def read_state(cluster: Any) -> ClusterState:
    """The current state of a cluster-like object (a blocking request to the service
    for a ``GatewayCluster``; the widgets use ``cluster_source`` instead)."""
    report = attr(cluster, "report")
    gateway = attr(cluster, "gateway")
    if callable(report):
        state = ClusterState.from_report(report())
    elif gateway is not None and callable(attr(gateway, "get_cluster")):
        state = ClusterState.from_report(gateway.get_cluster(cluster.name))
    else:
        status = attr(cluster, "status")
        state = ClusterState.from_report({"name": attr(cluster, "name"), "status": status})
    return with_local_details(state, cluster)


def gateway_client(cluster: Any) -> Any | None:
    """The gateway client of a ``GatewayCluster``-like object, else None."""
    gateway = attr(cluster, "gateway")
    if gateway is not None and callable(attr(gateway, "_cluster_report")):
        return gateway
    return None


def initial_state(cluster: Any) -> ClusterState:
    """What a widget shows before its first refresh, without asking a service."""
    if gateway_client(cluster) is None:
        return read_state(cluster)
    status = _LOCAL_STATUS.get(str(attr(cluster, "status")), "UNKNOWN")
    state = ClusterState(name=str(attr(cluster, "name") or ""), status=status)
    return with_local_details(state, cluster)


def _asyncio_loop(owner: Any) -> asyncio.AbstractEventLoop | None:
    return attr(attr(owner, "loop"), "asyncio_loop")


def _loop_gone(loop: asyncio.AbstractEventLoop) -> bool:
    return loop.is_closed() or not loop.is_running()


def _client_key(gateway: Any) -> tuple[str, int]:
    # The same service seen with the same credentials: hubgate's clients made by a
    # Gateway (new_cluster, connect) share its auth object.
    return (str(attr(gateway, "address")), id(attr(gateway, "auth")))


def cluster_key(gateway: Any, name: str) -> Hashable:
    return ("cluster", *_client_key(gateway), name)


def _run_in_background(gateway: Any) -> Any:
    return attr(gateway, "_run_in_background") or asyncio.ensure_future


def cluster_source(cluster: Any) -> Source | None:
    """How to refresh ``cluster`` on its own loop, or None when it has none."""
    gateway = gateway_client(cluster)
    if gateway is not None:
        return _gateway_cluster_source(cluster, gateway)
    loop = _asyncio_loop(cluster)
    if loop is None or callable(attr(cluster, "report")):
        return None

    async def read_attributes() -> ClusterState:
        return read_state(cluster)  # a distributed cluster's attributes: no I/O

    return Source(
        key=("local", id(cluster)),
        loop=loop,
        fetch=read_attributes,
        run_in_background=asyncio.ensure_future,
        closed=lambda: _loop_gone(loop),
        final=lambda state: state.final,
    )


def _gateway_cluster_source(cluster: Any, gateway: Any) -> Source | None:
    loop = _asyncio_loop(gateway)
    name = attr(cluster, "name")
    if loop is None or not name:
        return None

    async def fetch() -> ClusterState:
        details = attr(gateway, "_cluster_details")  # hubgate's richer record
        report = await (details(name) if details else gateway._cluster_report(name))
        return with_local_details(ClusterState.from_report(report), cluster)

    def closed() -> bool:
        status = str(attr(cluster, "status"))
        return bool(attr(gateway, "_closed")) or status in ("closing", "closed") or _loop_gone(loop)

    return Source(
        key=cluster_key(gateway, name),
        loop=loop,
        fetch=fetch,
        run_in_background=_run_in_background(gateway),
        closed=closed,
        final=lambda state: state.final,
        # 404: the service no longer knows the cluster.
        gone=lambda exc: isinstance(exc, ValueError),
    )


def listing_source(gateway: Any) -> Source | None:
    """How to refresh the list of ``gateway``'s clusters on its loop, or None."""
    loop = _asyncio_loop(gateway)
    if loop is None or not callable(attr(gateway, "_clusters")):
        return None
    details = attr(gateway, "_clusters_details")

    async def fetch() -> list[ClusterState]:
        reports = await (details() if details else gateway._clusters())
        states = [ClusterState.from_report(r) for r in reports]
        if details:
            # Full records: they also refresh any cluster widget of the same clusters.
            for state in states:
                refresh.offer(cluster_key(gateway, state.name), state)
        return states

    return Source(
        key=("clusters", *_client_key(gateway)),
        loop=loop,
        fetch=fetch,
        run_in_background=_run_in_background(gateway),
        closed=lambda: bool(attr(gateway, "_closed")) or _loop_gone(loop),
    )
