"""The gateway client: ``Gateway`` and ``GatewayCluster``, dask-gateway's API.

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
import atexit
import enum
import html
import json
import logging
import sys
import traceback
import warnings
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlparse

import aiohttp
import dask.config
import yarl
from dask.utils import format_bytes
from distributed import Client
from distributed.core import rpc
from distributed.utils import LoopRunner
from distributed.versions import get_versions

from . import comm  # noqa: F401  (registers the gateway:// comm)
from ._version import __version__
from .auth import GatewayAuth, get_auth
from .cluster_names import DISPLAY_NAME_OPTION, check_display_name, is_cluster_id
from .comm import GatewaySecurity
from .dask_config import config_value, format_template
from .options import Options
from .versions import CHECKED_PACKAGES, VersionReport

__all__ = [
    "ClusterReport",
    "ClusterStatus",
    "Gateway",
    "GatewayAuthError",
    "GatewayCluster",
    "GatewayClusterError",
    "GatewayServerError",
    "GatewayWarning",
]

logger = logging.getLogger("hubgate.client")

# defaults of the gateway.lease.* dask config keys (see gateway.yaml)
LEASE_SECONDS = 60
LEASE_RENEW_EVERY = 20


def _lease_seconds() -> float:
    """How long the service keeps a ``shutdown_on_close`` cluster after the client's last
    renewal (dask config ``gateway.lease.seconds``)."""
    return float(dask.config.get("gateway.lease.seconds", LEASE_SECONDS))


def _lease_renew_every() -> float:
    return float(dask.config.get("gateway.lease.renew-every", LEASE_RENEW_EVERY))


class GatewayClusterError(Exception):
    """Starting, stopping or scaling a cluster failed; the text says why."""


class GatewayServerError(Exception):
    """The gateway server failed (5xx)."""


class GatewayWarning(UserWarning):
    """Something the user should know, e.g. a scale request was clamped to a limit."""


class GatewayAuthError(aiohttp.ClientResponseError):
    """The gateway refused the credentials (401/403).

    A ``ClientResponseError`` (what dask-gateway's client raises here) whose text says
    what to do.
    """

    def __str__(self) -> str:
        return self.message


class ClusterStatus(enum.IntEnum):
    """A cluster's status, as the gateway reports it."""

    PENDING = 1
    RUNNING = 2
    STOPPING = 3
    STOPPED = 4
    FAILED = 5

    @classmethod
    def _create(cls, value: ClusterStatus | str) -> ClusterStatus:
        return value if isinstance(value, cls) else cls.from_name(value)

    @classmethod
    def from_name(cls, name: str) -> ClusterStatus:
        try:
            return cls[str(name).upper()]
        except KeyError:
            choices = ", ".join(s.name.lower() for s in cls)
            raise ValueError(
                f"{name!r} is not a valid ClusterStatus; use one of {choices}"
            ) from None


def _status_list(status: Any) -> list[ClusterStatus]:
    if status is None:
        return []
    if isinstance(status, str | ClusterStatus):
        return [ClusterStatus._create(status)]
    return [ClusterStatus._create(s) for s in status]


def _ms_to_datetime(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000)


def _iso_to_datetime(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class ClusterReport:
    """A report on a cluster's state.

    ``name`` is the cluster's id; ``display_name`` what people call it (a hubgate
    service's name, given at creation or picked by the service; None from a plain
    dask-gateway). ``options`` are the cluster's options only: the v1 API's
    ``hubgate:display_name`` entry becomes ``display_name``.

    ``owner`` and ``details`` (the full hubgate record: workers, resources, reason,
    events) are set only for reports from a hubgate service's own API.
    """

    __slots__ = (
        "dashboard_link",
        "details",
        "display_name",
        "name",
        "options",
        "owner",
        "scheduler_address",
        "start_time",
        "status",
        "stop_time",
        "tls_cert",
        "tls_key",
    )

    def __init__(
        self,
        name: str,
        options: dict[str, Any],
        status: ClusterStatus,
        scheduler_address: str | None,
        dashboard_link: str | None,
        start_time: datetime | None,
        stop_time: datetime | None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        owner: str | None = None,
        details: dict[str, Any] | None = None,
        display_name: str | None = None,
    ) -> None:
        self.name = name
        self.display_name = display_name
        self.options = options
        self.status = status
        self.scheduler_address = scheduler_address
        self.dashboard_link = dashboard_link
        self.start_time = start_time
        self.stop_time = stop_time
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.owner = owner
        self.details = details

    def __repr__(self) -> str:
        shown = f", display_name={self.display_name}" if self.display_name else ""
        return f"ClusterReport<name={self.name}{shown}, status={self.status.name}>"

    @property
    def security(self) -> GatewaySecurity | None:
        """TLS credentials for connecting to the scheduler, when the report has them."""
        if self.tls_key is None or self.tls_cert is None:
            return None
        return GatewaySecurity(tls_key=self.tls_key, tls_cert=self.tls_cert)

    @classmethod
    def _from_json(
        cls, public_address: str, proxy_address: str, msg: dict[str, Any]
    ) -> ClusterReport:
        """From the v1 API's cluster JSON (unknown keys are ignored)."""
        name = msg["name"]
        status = ClusterStatus._create(msg["status"])
        route = msg.get("dashboard_route")
        options = dict(msg.get("options") or {})
        display_name = options.pop(DISPLAY_NAME_OPTION, None)
        return cls(
            name=name,
            display_name=display_name if isinstance(display_name, str) else None,
            options=options,
            status=status,
            scheduler_address=f"{proxy_address}/{name}"
            if status is ClusterStatus.RUNNING
            else None,
            dashboard_link=f"{public_address}{route}" if route else None,
            start_time=_ms_to_datetime(msg.get("start_time")),
            stop_time=_ms_to_datetime(msg.get("stop_time")),
            tls_cert=msg.get("tls_cert"),
            tls_key=msg.get("tls_key"),
        )

    @classmethod
    def _from_hubgate(
        cls, public_address: str, proxy_address: str, msg: dict[str, Any]
    ) -> ClusterReport:
        """From hubgate's own cluster record (``api/hubgate/clusters``)."""
        name = msg["name"]
        status = ClusterStatus._create(msg["status"])
        url = msg.get("dashboard_url")
        if url and url.startswith("/"):
            # An absolute path under the hub: put it on the public address's host.
            parsed = urlparse(public_address)
            url = f"{parsed.scheme}://{parsed.netloc}{url}"
        return cls(
            name=name,
            display_name=msg.get("display_name") or None,
            options=msg.get("options") or {},
            status=status,
            scheduler_address=f"{proxy_address}/{name}"
            if status is ClusterStatus.RUNNING
            else None,
            dashboard_link=url or None,
            start_time=_iso_to_datetime(msg.get("started") or msg.get("created")),
            stop_time=_iso_to_datetime(msg.get("stopped")),
            owner=msg.get("owner"),
            details=msg,
        )


# -- addresses -----------------------------------------------------------------------


def infer_proxy_address(address: str, proxy_address: str | int | None) -> str:
    """The scheduler proxy as ``gateway://host:port``.

    ``None``: the host and port of ``address`` (80/443 by scheme, else 8786). An int
    (or digits): that port on ``address``'s host. A string with a scheme
    (``tls://``, ``tcp://``, ``gateway://``) or a bare ``host:port``: its host and port.
    """
    parsed = urlparse(address)
    if isinstance(proxy_address, str) and proxy_address.strip().isdigit():
        proxy_address = int(proxy_address)
    if proxy_address is None:
        port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme, 8786)
        netloc = f"{parsed.hostname}:{port}"
    elif isinstance(proxy_address, int):
        netloc = f"{parsed.hostname}:{proxy_address}"
    elif isinstance(proxy_address, str):
        proxy = urlparse(proxy_address)
        netloc = proxy.netloc if proxy.netloc else proxy_address.strip().rstrip("/")
    else:
        raise TypeError(f"proxy_address must be a string or a port number, got {proxy_address!r}")
    return f"gateway://{netloc}"


def _http_proxy_kwargs(scheme: str) -> dict[str, Any]:
    """aiohttp's proxy arguments from ``gateway.http-client.proxy``."""
    setting = config_value("gateway.http-client.proxy")
    if setting is True:
        info = aiohttp.helpers.proxies_from_env().get(scheme)
        if info is not None:
            return {"proxy": info.proxy, "proxy_auth": info.proxy_auth}
    elif isinstance(setting, str) and setting:
        proxy, proxy_auth = aiohttp.helpers.strip_auth_from_url(yarl.URL(setting))
        return {"proxy": proxy, "proxy_auth": proxy_auth}
    return {"proxy": None, "proxy_auth": None}


def _service_name(address: str) -> str:
    parts = urlparse(address).path.strip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "services":
        return parts[-1]
    return "dask-gateway"


def _token_page(address: str) -> str:
    if "/services/" in address:
        return address.split("/services/", 1)[0] + "/hub/token"
    return "https://<your hub>/hub/token"


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
        self._request_kwargs = _http_proxy_kwargs(urlparse(self.address).scheme)
        self.auth = get_auth(auth)

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
        _display(self, "gateway_widget", **kwargs)

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
            raise self._error_for(resp, body)
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise GatewayServerError(
                f"The gateway at {self.address} answered {method} {path} with something "
                "that is not JSON; is gateway.address the address of a dask gateway?"
            ) from None

    def _error_for(self, resp: aiohttp.ClientResponse, body: bytes) -> Exception:
        status = resp.status
        text = body.decode("utf-8", "replace").strip()
        server_msg = None
        try:
            server_msg = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        msg = server_msg or text or f"{status}: {resp.reason}"
        if status in (400, 404, 422):
            if status == 404 and server_msg is None:
                msg = (
                    f"{msg} ({resp.method} {resp.url.path}); check that gateway.address "
                    f"({self.address}) is a gateway's address and that the client and "
                    "server versions are compatible"
                )
            return ValueError(msg)
        if status == 409:
            return GatewayClusterError(msg)
        if status in (401, 403):
            return GatewayAuthError(
                resp.request_info,
                resp.history,
                status=status,
                message=self._auth_help(status, server_msg),
                headers=resp.headers,
            )
        if status >= 500:
            return GatewayServerError(msg)
        return aiohttp.ClientResponseError(
            resp.request_info, resp.history, status=status, message=msg, headers=resp.headers
        )

    def _auth_help(self, status: int, server_msg: str | None) -> str:
        service = _service_name(self.address)
        scope = f"access:services!service={service}"
        page = _token_page(self._public_address)
        said = f" (the server said: {server_msg})" if server_msg else ""
        if status == 403:
            return (
                f"The gateway at {self.address} refused this request{said}. If you expected "
                f"access, your token may lack the `{scope}` scope: create a token at {page} "
                "with that scope (or ask your administrator to grant it)."
            )
        return (
            f"The gateway at {self.address} did not accept your credentials{said}: the API "
            f"token is missing, invalid or expired, or lacks the `{scope}` scope. Create a "
            f"token at {page} and set it as JUPYTERHUB_API_TOKEN or in "
            "gateway.auth.kwargs.api_token (with gateway.auth.type: jupyterhub)."
        )

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
        statuses = _status_list(status)
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

    def connect(self, cluster_name: str, shutdown_on_close: bool = False) -> Any:
        """A ``GatewayCluster`` for an existing cluster (waits until it runs):
        ``cluster_name`` is its id or, on a hubgate service, one of your running
        clusters' display names (``connect("my-analysis")``)."""
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
        _warn_if_not_ok(reply)

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
        _warn_if_not_ok(reply)

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


def _warn_if_not_ok(reply: Any) -> None:
    if isinstance(reply, dict) and not reply.get("ok", True) and reply.get("msg"):
        warnings.warn(GatewayWarning(reply["msg"]), stacklevel=3)


def _display(obj: Any, widget_factory: str, **kwargs: Any) -> None:
    """Show ``hubgate.widgets.<widget_factory>(obj)`` if possible, else the HTML repr."""
    from IPython.display import display

    widget = None
    try:
        import ipywidgets  # noqa: F401

        from hubgate import widgets

        factory = getattr(widgets, widget_factory, None)
        widget = factory(obj) if factory is not None else None
    except ImportError:
        widget = None
    if widget is not None:
        display(widget, **kwargs)
    else:
        display({"text/plain": repr(obj), "text/html": obj._repr_html_()}, raw=True)


# -- clusters --------------------------------------------------------------------------


class GatewayCluster:
    """A dask cluster managed by the gateway.

    ``GatewayCluster(**options)`` creates one and waits until it runs; use
    ``GatewayCluster.from_name(name)`` (or ``gateway.connect``) for an existing one.
    With ``shutdown_on_close=True`` (the default for new clusters) the cluster is shut
    down when this object is closed or the process exits; a hubgate service also reaps
    it if the process dies without closing it.
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
        **kwargs: Any,
    ) -> None:
        self._init_internal(
            address=address,
            proxy_address=proxy_address,
            public_address=public_address,
            auth=auth,
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
    ) -> GatewayCluster:
        """Connect to an existing cluster by id (or, on hubgate, display name)."""
        self = object.__new__(cls)
        self._init_internal(
            address=address,
            proxy_address=proxy_address,
            public_address=public_address,
            auth=auth,
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
        self.scheduler_address = report.scheduler_address
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
        _display(self, "cluster_widget", **kwargs)

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
