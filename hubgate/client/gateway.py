"""``Gateway``: the client of a gateway server, with dask-gateway's client API.

Speaks dask-gateway's v1 REST API (so it works against a plain dask-gateway server) and
uses hubgate's own ``api/hubgate/...`` endpoints only when the server answers
``api/hubgate/whoami``: every user's clusters for admins, failure reasons with the last
log lines, logs on demand, and a lease that lets the service reap a cluster whose
kernel died.

Every operation is a private coroutine ``_x`` with a public ``x()`` that runs it through
``Gateway.sync``: on a background event loop for ordinary code, or returned as an
awaitable with ``asynchronous=True``.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlparse

import aiohttp
from distributed.utils import LoopRunner

from .._version import __version__
from ..cluster_names import check_display_name, is_cluster_id
from ..options import Options
from . import comm  # noqa: F401  (registers the gateway:// comm)
from .addresses import http_proxy_kwargs, infer_proxy_address
from .auth import GatewayAuth, get_auth
from .dask_config import config_value, format_template
from .direct_connect import (
    NEVER,
    choose_scheduler_address,
    direct_connect_timeout,
    parse_direct_connect,
)
from .display import show
from .errors import (
    GatewayClusterError,
    GatewayServerError,
    GatewayWarning,
    response_error,
    warn_if_not_ok,
)
from .reports import ClusterReport, ClusterStatus, status_list

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)


class Gateway:
    """A client for a dask-gateway (or hubgate) server.

    Parameters
    ----------
    address:
        The gateway's REST address, e.g. ``https://hub.example.org/services/dask-gateway``;
        defaults to ``gateway.address`` in the dask config.
    proxy_address:
        The scheduler proxy, as ``host:port``, ``tls://host:port`` or a port on
        ``address``'s host; defaults to ``gateway.proxy-address``, then ``address``.
    public_address:
        The address as a browser sees it (dashboard links); defaults to
        ``gateway.public-address``, then ``address``.
    auth:
        A ``GatewayAuth``, or ``"basic"``, ``"jupyterhub"``, ``"kerberos"``;
        defaults to ``gateway.auth.type``.
    direct_connect:
        hubgate only: ``"auto"`` connects to your clusters' schedulers directly when
        this process can reach them, else through the proxy; ``"always"`` only
        directly; ``"never"`` (or ``False``) only through the proxy. Defaults to
        ``gateway.direct-connect``, then ``"auto"`` (see ``direct_connect.py``).
    asynchronous:
        Return awaitables instead of blocking (for use in async code).
    loop:
        The event loop to use; by default a background one.
    """

    def __init__(
        self,
        address: str | None = None,
        proxy_address: str | int | None = None,
        public_address: str | None = None,
        auth: GatewayAuth | str | None = None,
        asynchronous: bool = False,
        loop: Any = None,
        direct_connect: bool | str | None = None,
    ) -> None:
        if address is None:
            address = config_value("gateway.address")
        if not address:
            raise ValueError(
                "No gateway address: pass Gateway(address=...), set gateway.address in "
                "~/.config/dask/gateway.yaml, or set DASK_GATEWAY__ADDRESS"
            )
        self.address = address.rstrip("/")
        if public_address is None:
            public_address = config_value("gateway.public-address")
        self._public_address = (public_address or self.address).rstrip("/")
        if proxy_address is None:
            proxy_address = config_value("gateway.proxy-address")
        self.proxy_address = infer_proxy_address(self.address, proxy_address)
        self._request_kwargs = http_proxy_kwargs(urlparse(self.address).scheme)
        self.auth = get_auth(auth)
        if direct_connect is None:
            self.direct_connect = parse_direct_connect(config_value("gateway.direct-connect"))
        else:
            self.direct_connect = parse_direct_connect(direct_connect, "direct_connect")
        self._direct_connect_timeout = direct_connect_timeout()

        self._session: aiohttp.ClientSession | None = None
        # None: not asked yet; False: a plain dask-gateway; dict: hubgate's whoami.
        self._hubgate: dict[str, Any] | bool | None = None
        self._closed = False
        # Work that runs on this client's loop for others (the widgets' refreshes);
        # cancelled when the client closes.
        self._background_tasks: set[asyncio.Task[Any]] = set()
        self._asynchronous = asynchronous
        self._loop_runner = LoopRunner(loop=loop, asynchronous=asynchronous)
        self._loop_runner.start()

    # -- plumbing --------------------------------------------------------------------
    @property
    def loop(self) -> Any:
        return self._loop_runner.loop

    @property
    def asynchronous(self) -> bool:
        return self._asynchronous

    @property
    def public_address(self) -> str:
        return self._public_address

    def _in_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop.asyncio_loop
        except RuntimeError:
            return False

    def sync(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run coroutine function ``func``: return its awaitable when asynchronous,
        else run it on the gateway's loop and wait for the result."""
        if self.asynchronous:
            return func(*args, **kwargs)
        if self._in_loop_thread():
            raise RuntimeError(
                "This blocking call was made from the gateway's own event loop; "
                "use the asynchronous API (asynchronous=True and await) there"
            )
        future = asyncio.run_coroutine_threadsafe(func(*args, **kwargs), self.loop.asyncio_loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> Any:
        """Close the HTTP session and stop the background loop. Safe to call twice."""
        if self.asynchronous:
            return self._cleanup()
        if self._closed:
            return None
        self._closed = True
        if self.loop.asyncio_loop.is_running():
            self.sync(self._cleanup)
        self._loop_runner.stop()
        return None

    def _run_in_background(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as a task on this client's loop until it ends or the client
        closes. Call it on the loop's thread."""
        task = asyncio.ensure_future(coro)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)
        return task

    async def _cleanup(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._background_tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._cleanup()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or getattr(self, "_asynchronous", True):
            return
        if sys.is_finalizing() or self._in_loop_thread():
            return
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"Gateway<{self.address}>"

    def _repr_html_(self) -> str:
        return (
            "<div><b>Gateway</b> "
            f"<a href='{html.escape(self._public_address, quote=True)}' target='_blank'>"
            f"{html.escape(self._public_address)}</a></div>"
        )

    def _ipython_display_(self, **kwargs: Any) -> None:
        show(self, "gateway_widget", **kwargs)

    # -- HTTP ------------------------------------------------------------------------
    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # "unsafe" keeps cookies for IP-address hosts; the session only ever talks
            # to this one gateway.
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        return self._session

    async def _request(self, method: str, path: str, json_body: Any = None) -> Any:
        """Call ``{address}/{path}`` with the auth dance; return the decoded JSON body
        (None when empty) or raise the mapped error."""
        session = self._get_session()
        url = f"{self.address}/{path}"
        kwargs = dict(self._request_kwargs)
        if json_body is not None:
            kwargs["json"] = json_body
        resp = await session.request(method, url, **kwargs)
        if resp.status == 401:
            headers, context = self.auth.pre_request(resp)
            resp.release()
            resp = await session.request(method, url, headers=headers, **kwargs)
            self.auth.post_response(resp, context)
        async with resp:
            body = await resp.read()
        if resp.status >= 400:
            raise response_error(resp, body, self.address, self._public_address)
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise GatewayServerError(
                f"The gateway at {self.address} answered {method} {path} with something "
                "that is not JSON; is gateway.address the address of a dask gateway?"
            ) from None

    # -- hubgate extras ---------------------------------------------------------------
    async def _hubgate_info(self) -> dict[str, Any] | None:
        """hubgate's ``whoami``, or None for a plain dask-gateway server (cached)."""
        if self._hubgate is None:
            try:
                self._hubgate = await self._request("GET", "api/hubgate/whoami") or {}
            except (ValueError, aiohttp.ClientResponseError):
                self._hubgate = False  # 404/405: not a hubgate service
            except (TimeoutError, GatewayServerError, aiohttp.ClientError):
                return None  # maybe transient: ask again next time
        return self._hubgate or None

    async def _require_hubgate(self, what: str) -> None:
        if await self._hubgate_info() is None:
            raise NotImplementedError(
                f"The gateway at {self.address} is not a hubgate service, so it does not "
                f"offer {what}"
            )

    async def _resolve(self, cluster: str) -> tuple[str, list[dict[str, Any]] | None]:
        """``(id, None)`` for the cluster the caller named: an id (or any name on a plain
        dask-gateway) as it is, else (hubgate) the id of the caller's unfinished cluster
        of that display name. No such cluster: ``(cluster, the caller's unfinished
        clusters)``, for the server to judge and ``_resolved`` to explain."""
        if is_cluster_id(cluster) or await self._hubgate_info() is None:
            return cluster, None
        data = await self._request("GET", "api/hubgate/clusters?status=PENDING,RUNNING,STOPPING")
        mine: list[dict[str, Any]] = data["clusters"]
        for record in mine:
            if cluster in (record.get("display_name"), record["name"]):
                return str(record["name"]), None
        return cluster, mine

    async def _resolved(
        self, method: Callable[..., Any], cluster: str, *args: Any, **kwargs: Any
    ) -> Any:
        """``method(id, ...)`` for the cluster the caller named (``_resolve``): the
        public methods take display names, the private ones ids. When nothing has
        that name and the server agrees (a 404's ValueError), the error lists the
        caller's clusters."""
        target, unmatched = await self._resolve(cluster)
        try:
            return await method(target, *args, **kwargs)
        except ValueError as exc:
            if unmatched is None:
                raise
            known = ", ".join(f"{c.get('display_name')} ({c['name']})" for c in unmatched)
            raise ValueError(
                f"You have no running cluster named {cluster!r} ({exc}); "
                + (f"yours are: {known}" if known else "you have no running clusters")
                + ". Give a display name or a cluster id (gateway.list_clusters() shows both)."
            ) from None

    def whoami(self) -> Any:
        """hubgate only: ``{"name", "admin", "groups"}`` of the caller, else None."""
        return self.sync(self._hubgate_info)

    async def _get_logs(self, cluster_name: str, lines: int | None = None) -> dict[str, Any]:
        await self._require_hubgate("cluster logs")
        query = f"?lines={int(lines)}" if lines else ""
        return await self._request("GET", f"api/hubgate/clusters/{quote(cluster_name)}/logs{query}")

    def get_logs(self, cluster_name: str, lines: int | None = None) -> Any:
        """hubgate only: the last log lines of a cluster's scheduler and workers,
        ``{"scheduler": str | None, "workers": {name: str | None}}``."""
        return self.sync(self._resolved, self._get_logs, cluster_name, lines)

    async def _failure_reason(self, cluster_name: str) -> str | None:
        if await self._hubgate_info() is None:
            return None
        try:
            record = await self._request("GET", f"api/hubgate/clusters/{quote(cluster_name)}")
        except Exception:
            logger.debug("Could not fetch the failure reason of %s", cluster_name, exc_info=True)
            return None
        return (record or {}).get("reason") or None

    async def _set_lease(self, cluster_name: str, seconds: int) -> bool:
        """Renew (or with 0, release) the lease that keeps a cluster alive while this
        client runs. False when the cluster is gone."""
        try:
            await self._request(
                "POST",
                f"api/hubgate/clusters/{quote(cluster_name)}/lease",
                {"seconds": seconds},
            )
        except ValueError:
            return False
        return True

    # -- the dask-gateway API ----------------------------------------------------------
    async def _clusters(self, status: Any = None, all_users: bool = False) -> list[ClusterReport]:
        statuses = status_list(status)
        if all_users:
            await self._require_hubgate("listing every user's clusters")
            query = "all_users=1"
            if statuses:
                query += "&status=" + ",".join(s.name for s in statuses)
            data = await self._request("GET", f"api/hubgate/clusters?{query}")
            return [
                ClusterReport._from_hubgate(self._public_address, self.proxy_address, c)
                for c in data["clusters"]
            ]
        query = "?status=" + ",".join(s.name for s in statuses) if statuses else ""
        data = await self._request("GET", f"api/v1/clusters/{query}")
        return [
            ClusterReport._from_json(self._public_address, self.proxy_address, c)
            for c in data.values()
        ]

    def list_clusters(self, status: Any = None, all_users: bool = False) -> Any:
        """Your clusters (by default the pending and running ones).

        ``status``: one of (or a list of) pending, running, stopping, stopped, failed.
        ``all_users=True`` (hubgate, admins): everyone's clusters.
        """
        return self.sync(self._clusters, status=status, all_users=all_users)

    async def _cluster_report(self, cluster_name: str, wait: bool = False) -> ClusterReport:
        query = "?wait" if wait else ""
        data = await self._request("GET", f"api/v1/clusters/{quote(cluster_name)}{query}")
        return ClusterReport._from_json(self._public_address, self.proxy_address, data)

    def get_cluster(self, cluster_name: str) -> Any:
        """A ``ClusterReport`` for one cluster (by id, or by display name on hubgate)."""
        return self.sync(self._resolved, self._cluster_report, cluster_name)

    async def _cluster_details(self, cluster_name: str) -> ClusterReport:
        """The richest report the server gives: hubgate's record (workers, resources,
        failure reason) when it is a hubgate service, else the v1 report."""
        if await self._hubgate_info() is None:
            return await self._cluster_report(cluster_name)
        data = await self._request("GET", f"api/hubgate/clusters/{quote(cluster_name)}")
        return ClusterReport._from_hubgate(self._public_address, self.proxy_address, data)

    async def _clusters_details(self) -> list[ClusterReport]:
        """The caller's pending and running clusters, as ``_cluster_details`` reports."""
        if await self._hubgate_info() is None:
            return await self._clusters()
        data = await self._request("GET", "api/hubgate/clusters?status=PENDING,RUNNING")
        return [
            ClusterReport._from_hubgate(self._public_address, self.proxy_address, c)
            for c in data["clusters"]
        ]

    async def _get_versions(self) -> dict[str, Any]:
        server = await self._request("GET", "api/version")
        return {"server": server, "client": {"version": __version__}}

    def get_versions(self) -> Any:
        """``{"server": {...}, "client": {"version": ...}}``."""
        return self.sync(self._get_versions)

    def _config_cluster_options(self) -> dict[str, Any]:
        options = config_value("gateway.cluster.options") or {}
        return {
            k: format_template(v, f"gateway.cluster.options.{k}") for k, v in dict(options).items()
        }

    async def _cluster_options(self, use_local_defaults: bool = True) -> Options:
        if await self._hubgate_info() is not None:
            data = await self._request("GET", "api/hubgate/options")
            options = Options._from_spec(data["fields"])
        else:
            data = await self._request("GET", "api/v1/options")
            options = Options._from_spec(data["cluster_options"])
        if use_local_defaults:
            for key, value in self._config_cluster_options().items():
                if key not in options:
                    warnings.warn(
                        GatewayWarning(
                            f"gateway.cluster.options sets {key!r}, which this gateway does "
                            f"not offer (available: {', '.join(options) or 'none'}); ignored"
                        ),
                        stacklevel=2,
                    )
                    continue
                try:
                    options[key] = value
                except ValueError as exc:
                    raise ValueError(
                        f"gateway.cluster.options in your dask config: {exc}"
                    ) from None
        return options

    def cluster_options(self, use_local_defaults: bool = True) -> Any:
        """The options this gateway offers, as an editable ``Options`` mapping,
        starting from the ``gateway.cluster.options`` config unless
        ``use_local_defaults=False``."""
        return self.sync(self._cluster_options, use_local_defaults=use_local_defaults)

    async def _submit(
        self, cluster_options: Any = None, display_name: str | None = None, **kwargs: Any
    ) -> str:
        if cluster_options is not None:
            if not isinstance(cluster_options, Mapping):
                raise TypeError(
                    "cluster_options must be the Options from gateway.cluster_options() "
                    f"(or a dict), got {type(cluster_options).__name__}"
                )
            options = dict(cluster_options)
        else:
            options = self._config_cluster_options()
        options.update(kwargs)
        if display_name is None:
            data = await self._request("POST", "api/v1/clusters/", {"cluster_options": options})
            return data["name"]
        check_display_name(display_name)  # a ValueError before anything is sent
        await self._require_hubgate("display names")
        body = {"options": options, "display_name": display_name}
        data = await self._request("POST", "api/hubgate/clusters", body)
        return data["name"]

    def submit(
        self, cluster_options: Any = None, display_name: str | None = None, **kwargs: Any
    ) -> Any:
        """Ask for a new cluster and return its id at once (see ``connect``).
        ``display_name`` (hubgate): see ``new_cluster``."""
        return self.sync(self._submit, cluster_options, display_name, **kwargs)

    async def _wait_for_start(self, cluster_name: str) -> ClusterReport:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                report = await self._cluster_report(cluster_name, wait=True)
            except TimeoutError:
                continue
            if report.status is ClusterStatus.RUNNING:
                return report
            if report.status is ClusterStatus.FAILED:
                reason = await self._failure_reason(cluster_name)
                if reason:
                    raise GatewayClusterError(f"Cluster {cluster_name!r} failed to start: {reason}")
                raise GatewayClusterError(
                    f"Cluster {cluster_name!r} failed to start, see logs for more information"
                )
            if report.status in (ClusterStatus.STOPPED, ClusterStatus.STOPPING):
                reason = await self._failure_reason(cluster_name)
                raise GatewayClusterError(
                    f"Cluster {cluster_name!r} is already stopped"
                    + (f": {reason}" if reason else "")
                )
            # A server without long-polling answers at once: don't hammer it.
            if loop.time() - started < 0.5:
                await asyncio.sleep(0.5)

    async def _scheduler_address_for(self, report: ClusterReport) -> str | None:
        """Where ``distributed`` should connect to the running cluster of ``report``:
        its scheduler directly when ``direct_connect`` allows and it answers, else the
        proxy address (``direct_connect.py``)."""
        proxy = report.scheduler_address
        security = report.security
        if self.direct_connect == NEVER or proxy is None or security is None:
            return proxy
        direct = None
        if await self._hubgate_info() is not None:
            try:
                record = await self._request("GET", f"api/hubgate/clusters/{quote(report.name)}")
                direct = (record or {}).get("direct_scheduler_address")
            except (GatewayServerError, aiohttp.ClientError, TimeoutError, ValueError):
                logger.debug("No direct address for %s", report.name, exc_info=True)
        return await choose_scheduler_address(
            report.name,
            proxy,
            direct if isinstance(direct, str) else None,
            security,
            self.direct_connect,
            self._direct_connect_timeout,
        )

    def connect(self, cluster_name: str, shutdown_on_close: bool = False) -> Any:
        """A ``GatewayCluster`` for an existing cluster (waits until it runs):
        ``cluster_name`` is its id or, on a hubgate service, one of your running
        clusters' display names (``connect("my-analysis")``)."""
        from .cluster import GatewayCluster

        return GatewayCluster.from_name(
            cluster_name,
            shutdown_on_close=shutdown_on_close,
            **self._cluster_kwargs(),
        )

    def new_cluster(
        self,
        cluster_options: Any = None,
        shutdown_on_close: bool = True,
        display_name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Create a cluster and wait until it runs: ``submit`` + ``connect``.

        ``display_name`` (hubgate): what to call it, e.g. ``"my-analysis"`` (1-30
        lowercase letters, digits and '-', starting with a letter), unique among your
        running clusters; the service picks one when it is not given. It is hubgate's
        keyword, never an option: other keywords are options, as in dask-gateway."""
        from .cluster import GatewayCluster

        return GatewayCluster(
            cluster_options=cluster_options,
            shutdown_on_close=shutdown_on_close,
            display_name=display_name,
            **self._cluster_kwargs(),
            **kwargs,
        )

    def _cluster_kwargs(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "proxy_address": self.proxy_address,
            "public_address": self._public_address,
            "auth": self.auth,
            "asynchronous": self.asynchronous,
            "loop": self.loop,
            "direct_connect": self.direct_connect,
        }

    async def _stop_cluster(self, cluster_name: str) -> None:
        await self._request("DELETE", f"api/v1/clusters/{quote(cluster_name)}")

    def stop_cluster(self, cluster_name: str) -> Any:
        """Shut a cluster down (returns at once; stopping continues on the server)."""
        return self.sync(self._resolved, self._stop_cluster, cluster_name)

    async def _scale_cluster(self, cluster_name: str, n: int) -> None:
        reply = await self._request(
            "POST", f"api/v1/clusters/{quote(cluster_name)}/scale", {"count": n}
        )
        warn_if_not_ok(reply)

    def scale_cluster(self, cluster_name: str, n: int) -> Any:
        """Ask for ``n`` workers."""
        return self.sync(self._resolved, self._scale_cluster, cluster_name, n)

    async def _adapt_cluster(
        self,
        cluster_name: str,
        minimum: int | None = None,
        maximum: int | None = None,
        active: bool = True,
    ) -> None:
        reply = await self._request(
            "POST",
            f"api/v1/clusters/{quote(cluster_name)}/adapt",
            {"minimum": minimum, "maximum": maximum, "active": active},
        )
        warn_if_not_ok(reply)

    def adapt_cluster(
        self,
        cluster_name: str,
        minimum: int | None = None,
        maximum: int | None = None,
        active: bool = True,
    ) -> Any:
        """Scale between ``minimum`` and ``maximum`` workers with the load
        (``active=False`` turns adaptive scaling off)."""
        return self.sync(
            self._resolved,
            self._adapt_cluster,
            cluster_name,
            minimum=minimum,
            maximum=maximum,
            active=active,
        )
