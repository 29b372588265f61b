"""dask-labextension's dashboard check, answered for this hub's hubgate dashboards.

dask-labextension asks its server extension ``dask/dashboard-check/<url>`` whether
``<url>`` hosts a Dask dashboard and which plots it has; its handler fetches
``<url>/individual-plots.json`` from the single-user server with no credentials. A hubgate
dashboard link (``<service>/clusters/<name>/status``, the official client's
``dashboard_link``) is only an entry that authenticates a browser and gives it a
single-use ticket for the cluster's own origin, so that fetch gets the hub's login page
and the lab shows no plots.

For links to this hub's hubgate service this handler asks the service instead
(``api/hubgate/clusters/<name>/plots``) with the single-user server's own token, as the
sidebar does: the service answers only the cluster's owner or an admin, and returns only
plots that are plain pages of that dashboard. No credential goes into the answer or any
URL; the panes dask-labextension then opens load ``<link>/<plot>`` in the browser through
the entry and its ticket, like any dashboard link. Every other URL is left to
dask-labextension's own handler.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from dask_labextension.dashboardhandler import DaskDashboardCheckHandler
from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import HTTPClientError

from .upstream import HubgateUpstream

__all__ = ["HubgateDashboardCheckHandler", "add_dashboard_check", "cluster_behind"]

UPSTREAM_SETTING = "hubgate_upstream"
# A cluster's name in the service's URLs: its id (letters, digits, - and _).
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: SplitResult) -> tuple[str, str, int] | None:
    scheme = url.scheme.lower()
    try:
        port = url.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        return None
    if not url.hostname or port is None:
        return None
    return scheme, url.hostname.lower(), port


def cluster_behind(url: str, service_addresses: Iterable[str]) -> str | None:
    """The cluster whose dashboard link ``url`` is, on one of ``service_addresses``.

    A link is ``<address>/clusters/<name>``, optionally followed by ``/status`` and a
    slash (dask-labextension drops the ``/status``); anything else (another host, another
    path, a query) is not a hubgate dashboard link and gives ``None``.
    """
    link = urlsplit(url)
    origin = _origin(link)
    if origin is None or link.query or link.fragment:
        return None
    path = link.path.rstrip("/")
    path = path.removesuffix("/status")
    for address in service_addresses:
        service = urlsplit(address)
        if not address or _origin(service) != origin:
            continue
        name = path.removeprefix(service.path.rstrip("/") + "/clusters/")
        if name != path and _CLUSTER_NAME.match(name):
            return name
    return None


class HubgateDashboardCheckHandler(DaskDashboardCheckHandler):
    """``dask/dashboard-check/<url>``: hubgate's links through the service, others as
    dask-labextension checks them. Always 200 with ``isActive``, as dask-labextension's."""

    auth_resource = "hubgate"

    @property
    def upstream(self) -> HubgateUpstream:
        return self.settings[UPSTREAM_SETTING]

    @web.authenticated
    @authorized
    async def get(self, url: str) -> None:
        link = unquote(url)
        name = cluster_behind(link, self.upstream.dashboard_addresses())
        if name is None:
            await super().get(url)
            return
        link = link.rstrip("/").removesuffix("/status")
        plots = await self._plots_of(name)
        self.set_header("Content-Type", "application/json")
        if plots is None:
            self.finish(json.dumps({"url": link, "isActive": False, "plots": {}}))
            return
        self.finish(
            json.dumps({"url": link, "isActive": True, "effectiveUrl": None, "plots": plots})
        )

    async def _plots_of(self, name: str) -> dict[str, str] | None:
        """dask-labextension's ``{title: "/path"}`` of the cluster's plots, or ``None``
        when the service refuses (not the owner or an admin, not running, no such
        cluster) or cannot answer; the reason goes to the server's log."""
        upstream = self.upstream
        if not upstream.api_token:
            self.log.warning("hubgate: no JupyterHub API token to check dashboard %s", name)
            return None
        try:
            response = await upstream.fetch(f"clusters/{name}/plots")
        # raise_error=False still raises for connection failures and timeouts.
        except (OSError, HTTPClientError) as exc:
            self.log.warning("hubgate service at %s unreachable: %s", upstream.address, exc)
            return None
        if response.code != 200:
            self.log.info(
                "hubgate: no plots for dashboard %s (%s): %s",
                name,
                response.code,
                (response.body or b"")[:300].decode("utf-8", "replace"),
            )
            return None
        try:
            listed = json.loads(response.body)["plots"]
            return {str(plot["title"]): "/" + str(plot["path"]) for plot in listed}
        except (ValueError, KeyError, TypeError) as exc:
            self.log.warning("hubgate: unreadable plot list for %s: %s", name, exc)
            return None


def add_dashboard_check(web_app: Any) -> None:
    """Serve ``dask/dashboard-check/<url>`` before dask-labextension does.

    Tornado tries host rules in the order they were added and extensions are loaded in
    alphabetical order, so dask-labextension's rule would come first: ours is moved to
    the front (it matches that one path only).
    """
    rules = web_app.default_router.rules
    before = list(rules)
    pattern = url_path_join(web_app.settings["base_url"], "dask/dashboard-check/(?P<url>.+)")
    web_app.add_handlers(".*$", [(pattern, HubgateDashboardCheckHandler)])
    [added] = [rule for rule in rules if not any(rule is old for old in before)]
    rules.remove(added)
    rules.insert(0, added)
