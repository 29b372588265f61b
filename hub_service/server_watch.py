"""Stop the clusters a single-user server made when that server stops
(``HubgateService.stop_clusters_with_server``).

Which clusters: those created with a server's own token, the ``JUPYTERHUB_API_TOKEN``
the hub puts inside each server (notebooks and their kernels, widgets, the JupyterLab
sidebar). The service recorded that server on the cluster (``Cluster.server``) when it
was made. Clusters made with any other token (one from ``/hub/token``, on a laptop or
in a server) belong to no server and are never stopped here, whether or not a server
of their user runs: the service cannot tell what they belong to.

When: the hub's list of active servers (one request per ``server_poll_interval`` for
all users, :mod:`.hub_servers`) no longer holds the cluster's server, or holds it with
another start time than an earlier list did (it stopped and started again between two
lists). Only clusters created before the list was asked for are judged by it, so a
cluster made just after a server started is never stopped on an older view, and a
cluster is never stopped on a view the service does not have: at start (the service's
or the hub's) nothing is stopped until the hub has answered, and a failed request
changes nothing. A server that stopped while the service was down is noticed at the
first list; one that stopped and started again meanwhile is not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from .hub_servers import HubRefused, HubUnavailable, ServerKey, ServerList
from .model import Cluster
from .ratelimited_log import RateLimitedLog

log = logging.getLogger("hubgate.server_watch")


class ServerSource(Protocol):
    async def check_access(self) -> None: ...

    async def active(self) -> ServerList: ...

    async def servers_of(self, user: str) -> dict[str, str | None]: ...


@dataclass(frozen=True)
class Sighting:
    """A server as the last list that held it showed it."""

    started: str | None
    sent_at: float


def describe_server(user: str, server: str) -> str:
    """``alice's default server`` / ``alice's server "gpu"``: how the hub's users
    know their servers."""
    return f"{user}'s default server" if server == "" else f'{user}\'s server "{server}"'


def server_stop_reasons(
    clusters: Iterable[Cluster], servers: ServerList, seen: dict[ServerKey, Sighting]
) -> list[tuple[Cluster, str]]:
    """The clusters to stop on this list, each with the reason its user sees.
    ``seen``: each server as an earlier list showed it."""
    stops = []
    for cluster in clusters:
        if cluster.server is None or not cluster.status.active:
            continue
        key = (cluster.username, cluster.server)
        what = None
        if key not in servers.started:
            if cluster.created < servers.sent_at:
                what = "stopped"
        else:
            before = seen.get(key)
            now = servers.started[key]
            if (
                before is not None
                and None not in (before.started, now)
                and before.started != now
                and cluster.created < before.sent_at
            ):
                # made by the instance that an earlier list saw, which has stopped since
                what = "stopped and started again"
        if what:
            stops.append(
                (
                    cluster,
                    f"stopped because the JupyterHub server it was created from "
                    f"({describe_server(*key)}) {what}",
                )
            )
    return stops


def sightings(servers: ServerList) -> dict[ServerKey, Sighting]:
    return {key: Sighting(started, servers.sent_at) for key, started in servers.started.items()}


class ServerWatch:
    """Asks the hub about servers every ``interval`` seconds and stops the clusters
    of servers that stopped."""

    def __init__(
        self,
        hub: ServerSource,
        *,
        clusters: Callable[[], Iterable[Cluster]],
        stop: Callable[[Cluster, str], Awaitable[None]],
        interval: float,
    ) -> None:
        self.hub = hub
        self.clusters = clusters
        self.stop = stop
        self.interval = interval
        self._seen: dict[ServerKey, Sighting] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._problems = RateLimitedLog(log, interval=600)

    async def start(self) -> None:
        """A first look now (``HubRefused`` when the service may not look at all: a
        configuration error to stop at), then one every interval."""
        try:
            await self.hub.check_access()
            await self.check()
        except HubUnavailable as exc:
            log.warning("Cannot list the hub's servers yet (%s); trying again", exc)
        self._loop_task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except (HubRefused, HubUnavailable) as exc:
                self._problems.warning(
                    type(exc).__name__,
                    "Cannot tell which servers stopped, so no cluster is stopped with its "
                    "server until this is resolved: %s",
                    exc,
                )
            except Exception:
                log.exception("Checking the hub's servers failed; trying again")

    async def check(self) -> None:
        """One look at the hub's servers; stops what stopped with its server."""
        servers = await self.hub.active()
        # A server missing from the list is confirmed with its user's own record: a
        # list in several pages can skip a user whose neighbour's server stopped.
        for user in sorted(self._missing_users(servers)):
            servers = servers.with_user(user, await self.hub.servers_of(user))
        stops = server_stop_reasons(self.clusters(), servers, self._seen)
        self._seen = sightings(servers)
        for cluster, reason in stops:
            log.info("Cluster %s of %s: %s", cluster.name, cluster.username, reason)
        # All at once; the next look waits for them (a stop is quick, and a cluster
        # still stopping is not judged again).
        results = await asyncio.gather(
            *(self.stop(cluster, reason) for cluster, reason in stops), return_exceptions=True
        )
        for (cluster, _), result in zip(stops, results, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "Stopping cluster %s with its server failed", cluster.name, exc_info=result
                )

    def _missing_users(self, servers: ServerList) -> set[str]:
        return {
            c.username
            for c in self.clusters()
            if c.server is not None
            and c.status.active
            and c.created < servers.sent_at
            and (c.username, c.server) not in servers.started
        }
