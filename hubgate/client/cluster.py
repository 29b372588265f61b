"""``GatewayCluster``: one cluster of the gateway, as dask's cluster objects behave.

It keeps ``scheduler_info`` current from the scheduler's worker-status stream (for
widgets), renews a hubgate service's lease while it runs with ``shutdown_on_close``, and
closes the clusters still open when the process exits.
"""

from __future__ import annotations

import asyncio
import atexit
import html
import logging
import sys
import traceback
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import dask.config
from dask.utils import format_bytes
from distributed import Client
from distributed.core import rpc
from distributed.versions import get_versions

from .auth import GatewayAuth
from .comm import GatewaySecurity
from .display import show
from .errors import GatewayClusterError, GatewayWarning
from .gateway import Gateway
from .versions import CHECKED_PACKAGES, VersionReport

__all__ = ["GatewayCluster"]

logger = logging.getLogger(__name__)

# defaults of the gateway.lease.* dask config keys (see gateway.yaml)
LEASE_SECONDS = 60
LEASE_RENEW_EVERY = 20


def _lease_seconds() -> float:
    """How long the service keeps a ``shutdown_on_close`` cluster after the client's last
    renewal (dask config ``gateway.lease.seconds``)."""
    return float(dask.config.get("gateway.lease.seconds", LEASE_SECONDS))


def _lease_renew_every() -> float:
    return float(dask.config.get("gateway.lease.renew-every", LEASE_RENEW_EVERY))


class GatewayCluster:
    """A dask cluster managed by the gateway.

    ``GatewayCluster(**options)`` creates one and waits until it runs; use
    ``GatewayCluster.from_name(name)`` (or ``gateway.connect``) for an existing one.
    With ``shutdown_on_close=True`` (the default for new clusters) the cluster is shut
    down when this object is closed or the process exits; a hubgate service also reaps
    it if the process dies without closing it. ``direct_connect`` (hubgate): see
    ``Gateway``; ``scheduler_address`` is the scheduler's own ``tls://`` address when
    the client connects directly, else the proxy's ``gateway://`` one.
    """

    _instances: weakref.WeakSet[GatewayCluster] = weakref.WeakSet()

    def __init__(
        self,
        address: str | None = None,
        proxy_address: str | int | None = None,
        public_address: str | None = None,
        auth: GatewayAuth | str | None = None,
        cluster_options: Any = None,
        shutdown_on_close: bool = True,
        asynchronous: bool = False,
        loop: Any = None,
        display_name: str | None = None,
        direct_connect: bool | str | None = None,
        **kwargs: Any,
    ) -> None:
        self._init_internal(
            address=address,
            proxy_address=proxy_address,
            public_address=public_address,
            auth=auth,
            direct_connect=direct_connect,
            cluster_options=cluster_options,
            cluster_kwargs=kwargs,
            display_name=display_name,
            shutdown_on_close=shutdown_on_close,
            asynchronous=asynchronous,
            loop=loop,
        )

    @classmethod
    def from_name(
        cls,
        cluster_name: str,
        shutdown_on_close: bool = False,
        address: str | None = None,
        proxy_address: str | int | None = None,
        public_address: str | None = None,
        auth: GatewayAuth | str | None = None,
        asynchronous: bool = False,
        loop: Any = None,
        direct_connect: bool | str | None = None,
    ) -> GatewayCluster:
        """Connect to an existing cluster by id (or, on hubgate, display name)."""
        self = object.__new__(cls)
        self._init_internal(
            address=address,
            proxy_address=proxy_address,
            public_address=public_address,
            auth=auth,
            direct_connect=direct_connect,
            shutdown_on_close=shutdown_on_close,
            asynchronous=asynchronous,
            loop=loop,
            name=cluster_name,
        )
        return self

    def _init_internal(
        self,
        address: str | None,
        proxy_address: str | int | None,
        public_address: str | None,
        auth: Any,
        shutdown_on_close: bool,
        asynchronous: bool,
        loop: Any,
        cluster_options: Any = None,
        cluster_kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        display_name: str | None = None,
        direct_connect: bool | str | None = None,
    ) -> None:
        self.status = "created" if name is None else "starting"
        self.shutdown_on_close = shutdown_on_close
        self.name = name
        # what people call it (hubgate); known once started
        self.display_name = display_name
        self.scheduler_address: str | None = None
        self.dashboard_link: str | None = None
        self.security: GatewaySecurity | None = None
        self.scheduler_info: dict[str, Any] = {}
        # Called with scheduler_info after each worker change (the widget listens).
        self._scheduler_info_callbacks: list[Callable[[dict[str, Any]], None]] = []
        self._cluster_options = cluster_options
        self._cluster_kwargs = cluster_kwargs or {}
        self._scheduler_comm: rpc | None = None
        self._watch_task: asyncio.Task | None = None
        self._lease_task: asyncio.Task | None = None
        self._start_task: asyncio.Future | None = None
        self._stop_task: asyncio.Future | None = None
        # Clients made by get_client; closed with the cluster so they don't retry forever.
        self._clients: weakref.WeakSet[Client] = weakref.WeakSet()
        self.gateway = Gateway(
            address=address,
            proxy_address=proxy_address,
            public_address=public_address,
            auth=auth,
            asynchronous=asynchronous,
            loop=loop,
            direct_connect=direct_connect,
        )
        self._instances.add(self)
        if not self.asynchronous:
            try:
                self.gateway.sync(self._start_internal)
            except BaseException:
                self.gateway.close()
                raise

    @property
    def loop(self) -> Any:
        return self.gateway.loop

    @property
    def asynchronous(self) -> bool:
        return self.gateway.asynchronous

    # -- lifecycle -------------------------------------------------------------------
    async def _start_internal(self) -> GatewayCluster:
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self._start_async())
        try:
            await self._start_task
        except BaseException:
            await self._stop_internal()
            raise
        return self

    async def _start_async(self) -> None:
        if self.status in ("closing", "closed"):
            return
        if self.status == "created":
            self.status = "starting"
            self.name = await self.gateway._submit(
                self._cluster_options, self.display_name, **self._cluster_kwargs
            )
        else:
            # a display name (or the id) the caller gave: the id from here on
            report = await self.gateway._resolved(self.gateway._cluster_report, self.name)
            self.name = report.name
        if self.shutdown_on_close and await self.gateway._hubgate_info() is not None:
            self._lease_task = asyncio.ensure_future(self._keep_lease(self.name))
        report = await self.gateway._wait_for_start(self.name)
        self.display_name = report.display_name
        # the scheduler itself when allowed and reachable, else the proxy
        self.scheduler_address = await self.gateway._scheduler_address_for(report)
        self.dashboard_link = report.dashboard_link
        self.security = report.security
        await self._watch_scheduler()
        self.status = "running"

    async def _keep_lease(self, name: str) -> None:
        """Renew the lease until cancelled; the service reaps the cluster if we stop."""
        while True:
            try:
                if not await self.gateway._set_lease(name, _lease_seconds()):
                    return  # the cluster is gone
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.debug("Renewing the lease of cluster %s failed", name, exc_info=True)
            await asyncio.sleep(_lease_renew_every())

    async def _watch_scheduler(self) -> None:
        """Subscribe to the scheduler's worker changes (for scheduler_info and widgets)."""
        assert self.scheduler_address is not None and self.security is not None
        self._scheduler_comm = rpc(
            self.scheduler_address, connection_args=self.security.get_connection_args("client")
        )
        live = None
        try:
            live = await self._scheduler_comm.live_comm()
            await live.write({"op": "subscribe_worker_status"})
            self.scheduler_info = await live.read()
            self._watch_task = asyncio.ensure_future(_watch_worker_status(weakref.ref(self), live))
        except Exception:
            logger.info("Could not subscribe to %s's worker status", self.name, exc_info=True)
            if live is not None:
                await live.close()

    def _notify_scheduler_info(self) -> None:
        for callback in list(self._scheduler_info_callbacks):
            try:
                callback(self.scheduler_info)
            except Exception:
                logger.exception("A scheduler_info callback of %s failed", self.name)

    async def _stop_internal(self, shutdown: bool | None = None) -> None:
        self._instances.discard(self)
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop_async())
        try:
            await self._stop_task
        except Exception:
            logger.warning("Closing the clients of cluster %s failed", self.name, exc_info=True)
        if shutdown is None:
            shutdown = self.shutdown_on_close
        had_lease = self._lease_task is not None
        if self._lease_task is not None:
            await _cancel(self._lease_task)
            self._lease_task = None
        if self.name is not None:
            try:
                if shutdown:
                    await self.gateway._stop_cluster(self.name)
                elif had_lease:
                    await self.gateway._set_lease(self.name, 0)
            except Exception:
                logger.error("Shutting down cluster %s failed", self.name, exc_info=True)
        await self.gateway._cleanup()

    async def _stop_async(self) -> None:
        if self._start_task is not None and not self._start_task.done():
            await _cancel(self._start_task)
        self.status = "closing"
        if self._watch_task is not None:
            await _cancel(self._watch_task)
        if self._scheduler_comm is not None:
            await self._scheduler_comm.close_rpc()
        for client in list(self._clients):
            await client._close()
            self._clients.discard(client)
        self.status = "closed"

    def __await__(self) -> Any:
        return self._start_internal().__await__()

    async def __aenter__(self) -> GatewayCluster:
        return await self._start_internal()

    async def __aexit__(self, *exc: Any) -> None:
        await self._stop_internal()

    def __enter__(self) -> GatewayCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.asynchronous:
            self.close()

    def close(self, shutdown: bool | None = None) -> Any:
        """Close this object; with ``shutdown`` (default: ``shutdown_on_close``) also
        shut the cluster down. Safe to call twice."""
        if self.asynchronous or self.gateway._in_loop_thread():
            # Called from async code (e.g. Client.shutdown on our loop): hand back work.
            return self._stop_internal(shutdown=shutdown)
        if self.status == "closed" and self.gateway._closed:
            return None
        # Close our clients the blocking way first: each holds a share of the loop (its
        # loop runner), which only Client.close() gives back; closed from the loop, a
        # client would keep the loop thread running after the gateway closed.
        for client in list(self._clients):
            client.close()
        if self.loop.asyncio_loop.is_running():
            self.gateway.sync(self._stop_internal, shutdown=shutdown)
        self.gateway.close()
        return None

    def shutdown(self) -> Any:
        """Shut the cluster down: ``close(shutdown=True)``."""
        return self.close(shutdown=True)

    def __del__(self) -> None:
        if not hasattr(self, "gateway") or self.asynchronous or sys.is_finalizing():
            return
        if self.status == "closed" or self.gateway._in_loop_thread():
            return
        try:
            self.close()
        except Exception:
            pass

    # -- using the cluster ------------------------------------------------------------
    def __repr__(self) -> str:
        display_name = getattr(self, "display_name", None)  # a repr never fails
        shown = f", display_name={display_name}" if display_name else ""
        return f"GatewayCluster<{self.name}{shown}, status={self.status}>"

    def _repr_html_(self) -> str:
        link = self.dashboard_link
        dashboard = (
            f"<a href='{html.escape(link, quote=True)}' target='_blank'>{html.escape(link)}</a>"
            if link
            else "Not available"
        )
        return (
            "<div style='padding: 10px; border: 1px solid #999999; display: inline-block;'>"
            "<h3>GatewayCluster</h3><ul>"
            f"<li><b>Name: </b>{html.escape(str(getattr(self, 'display_name', None) or self.name))}</li>"
            f"<li><b>Id: </b>{html.escape(str(self.name))}</li>"
            f"<li><b>Status: </b>{html.escape(str(self.status))}</li>"
            f"<li><b>Dashboard: </b>{dashboard}</li>"
            "</ul></div>"
        )

    def _ipython_display_(self, **kwargs: Any) -> None:
        show(self, "cluster_widget", **kwargs)

    def get_client(self, set_as_default: bool = True) -> Client:
        """A ``distributed.Client`` connected to this cluster.

        Warns (``GatewayWarning``) when the cluster's dask, distributed, Python,
        cloudpickle or msgpack versions differ from this process's.
        """
        client = Client(
            self,
            security=self.security,
            set_as_default=set_as_default,
            asynchronous=self.asynchronous,
            loop=self.loop,
        )
        if not self.asynchronous:
            self._clients.add(client)
            try:
                report = VersionReport.from_versions(
                    client.get_versions(check=False, packages=list(CHECKED_PACKAGES[1:]))
                )
            except Exception:
                logger.debug("Could not compare versions with %s", self.name, exc_info=True)
            else:
                if not report.ok:
                    warnings.warn(GatewayWarning(str(report)), stacklevel=2)
        return client

    async def _check_versions(self) -> VersionReport:
        if self.scheduler_address is None:
            raise GatewayClusterError(f"Cluster {self.name!r} is not running")
        # A plain rpc, not an asynchronous Client: such a client, made on this gateway's
        # loop, never hands back its share of that loop (distributed's LoopRunner), so
        # the loop's thread would outlive close().
        packages = list(CHECKED_PACKAGES[1:])
        scheduler = rpc(
            self.scheduler_address,
            connection_args=self.security.get_connection_args("client"),
        )
        try:
            versions = {
                "scheduler": await scheduler.versions(packages=packages),
                "workers": await scheduler.broadcast(
                    msg={"op": "versions", "packages": packages}, on_error="ignore"
                ),
                "client": get_versions(packages=packages),
            }
        finally:
            await scheduler.close_rpc()
        return VersionReport.from_versions(versions)

    def check_versions(self) -> Any:
        """Compare package versions of this process, the scheduler and the workers;
        returns a ``VersionReport`` (``.ok``, ``.rows``, printable)."""
        return self.gateway.sync(self._check_versions)

    def scale(self, n: int) -> Any:
        """Ask for ``n`` workers (turns adaptive scaling off)."""
        return self.gateway.scale_cluster(self.name, n)

    def adapt(
        self, minimum: int | None = None, maximum: int | None = None, active: bool = True
    ) -> Any:
        """Scale between ``minimum`` and ``maximum`` workers with the load."""
        return self.gateway.adapt_cluster(
            self.name, minimum=minimum, maximum=maximum, active=active
        )

    def get_logs(self, lines: int | None = None) -> Any:
        """hubgate only: the last log lines of the scheduler and each worker."""
        return self.gateway.get_logs(self.name, lines)

    def _widget_status(self) -> str:
        """Workers/threads/memory as a small HTML table (for displays)."""
        workers = self.scheduler_info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        memory = sum(w.get("memory_limit", 0) for w in workers.values())
        return (
            f"<table><tr><th>Workers</th><td>{len(workers)}</td></tr>"
            f"<tr><th>Threads</th><td>{threads}</td></tr>"
            f"<tr><th>Memory</th><td>{html.escape(format_bytes(memory))}</td></tr></table>"
        )


async def _watch_worker_status(ref: weakref.ref[GatewayCluster], live: Any) -> None:
    """Apply the scheduler's worker add/remove messages to ``scheduler_info``.

    Holds only a weak reference, so a forgotten cluster can still be collected.
    """
    try:
        while True:
            try:
                messages = await live.read()
            except OSError:
                return
            cluster = ref()
            if cluster is None:
                return
            info = cluster.scheduler_info
            for op, msg in messages:
                if op == "add":
                    info.setdefault("workers", {}).update(msg.pop("workers", {}))
                    info.update(msg)
                elif op == "remove":
                    info.get("workers", {}).pop(msg, None)
            cluster._notify_scheduler_info()
            del cluster
    finally:
        await live.close()


async def _cancel(task: asyncio.Future) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
    except Exception:
        logger.debug("A cancelled task failed", exc_info=True)


@atexit.register
def _close_lingering_clusters() -> None:
    """At exit, close the clusters still open (shutting down those that asked for it)."""
    for cluster in list(GatewayCluster._instances):
        try:
            if not cluster.asynchronous:
                cluster.close()
        except Exception as exc:
            details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            warnings.warn(f"Closing {cluster!r} at exit failed:\n{details}", stacklevel=1)
