"""The dashboard origin's web application: the service's second HTTP listener.

It shares no cookie with the hub or the service. A viewer arrives from the service's
origin (``dashboard_entry.py``) at ``/_hubgate/enter/<name>?ticket=...&next=...``; the
single-use ticket becomes this origin's own session cookie, and the browser goes on to
``next``, a path under ``/clusters/<name>/``, which ``dashboard_proxy.py`` serves from
the cluster's scheduler. Every request and websocket is checked again: its session, its
host (on per-cluster origins a host serves only its own cluster), and with the service
(:class:`DashboardAccess`) that the cluster still runs and the viewer may still see it.

The cookie is ``HttpOnly``, host-only and scoped to the cluster's path. Where the origin
allows ``Secure`` cookies (https, or ``*.localhost``) it is ``Secure; SameSite=None;
Partitioned``: a partitioned cookie is kept per top-level site, so it works in the
JupyterLab panes that frame a dashboard from the hub's site (where third-party cookies
are blocked) and is never sent when another site is the top-level page. Elsewhere (plain
http on a network name) it is ``SameSite=Lax``, and lab panes work only when the hub and
the dashboards are on the same site.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from tornado import web

from ..runtime.dashboard_guard import dashboard_prefix
from .dashboard_origin import DashboardOrigin
from .dashboard_proxy import (
    AUTHORIZE_SETTING,
    SECRET_SETTING,
    TARGET_SETTING,
    content_security_policy,
    dashboard_routes,
    error_page,
)
from .dashboard_sessions import DashboardGrant, DashboardSessions
from .unexpected import LogsUnexpectedErrors

__all__ = ["COOKIE", "DashboardAccess", "enter_url", "make_dashboard_app"]

COOKIE = "hubgate-dashboard"
ENTER_PATH = "/_hubgate/enter/"
ORIGIN_SETTING = "hubgate_dashboard_origin"
SESSIONS_SETTING = "hubgate_dashboard_sessions"


@dataclass(frozen=True)
class DashboardAccess:
    """What the dashboard listener asks the service.

    ``target(name)``: the scheduler dashboard's ``http://host:port`` of a RUNNING
    cluster, else ``None``. ``secret(name)``: the cluster's dashboard secret.
    ``recheck(grant)``: returns if the grant still holds (the cluster runs, the viewer
    is its owner or still an admin), else raises ``HTTPError`` 403/404.
    """

    target: Callable[[str], str | None]
    secret: Callable[[str], str | None]
    recheck: Callable[[DashboardGrant], Awaitable[None]]


def enter_url(origin: DashboardOrigin, cluster: str, ticket: str, next_path: str) -> str:
    """Where the service's origin sends a viewer with a fresh ticket."""
    query = urlencode({"ticket": ticket, "next": next_path})
    return f"{origin.origin_for(cluster)}{ENTER_PATH}{cluster}?{query}"


def _is_dashboard_path(path: str, cluster: str) -> bool:
    prefix = dashboard_prefix(cluster)
    return path == prefix or path.startswith(prefix + "/")


class _PageHandler(LogsUnexpectedErrors):
    """Readable HTML errors under a closed content policy."""

    @property
    def origin(self) -> DashboardOrigin:
        return self.settings[ORIGIN_SETTING]

    @property
    def sessions(self) -> DashboardSessions:
        return self.settings[SESSIONS_SETTING]

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Content-Security-Policy", content_security_policy(None))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self.unexpected_error_text() or message
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(error_page(status_code, self._reason, message))


class EnterHandler(_PageHandler):
    """``GET /_hubgate/enter/<name>?ticket=...&next=...``: ticket in, cookie out."""

    def get(self, name: str) -> None:
        if not self.origin.host_serves(self.request.host, name):
            raise wrong_host(name)
        next_path = self.get_query_argument("next", dashboard_prefix(name) + "/")
        if not _is_dashboard_path(next_path.split("?", 1)[0], name):
            raise web.HTTPError(400, "%s", f"next must be a path under {dashboard_prefix(name)}/")
        redeemed = self.sessions.redeem(self.get_query_argument("ticket", ""), name)
        if redeemed is None:
            raise web.HTTPError(
                403,
                "%s",
                "This dashboard link was already used or has expired. Open the dashboard "
                "again from JupyterHub (the clusters page, your notebook's dashboard link "
                "or the lab's Dask clusters panel).",
            )
        session_id, _ = redeemed
        self.add_header("Set-Cookie", self._cookie(name, session_id))
        self.redirect(next_path)

    def _cookie(self, name: str, session_id: str) -> str:
        attributes = [
            f"{COOKIE}={session_id}",
            f"Path={dashboard_prefix(name)}",
            f"Max-Age={int(self.sessions.session_lifetime)}",
            "HttpOnly",
        ]
        if self.origin.secure:
            attributes += ["Secure", "SameSite=None", "Partitioned"]
        else:
            attributes.append("SameSite=Lax")
        return "; ".join(attributes)


class NotFoundHandler(_PageHandler):
    def prepare(self) -> None:
        raise web.HTTPError(
            404, "%s", "Nothing here: dashboards are at /clusters/<name>/ on this origin."
        )


def wrong_host(cluster: str) -> web.HTTPError:
    return web.HTTPError(
        404, "%s", f"This address does not serve the dashboard of cluster '{cluster}'."
    )


def session_authorizer(
    access: DashboardAccess,
) -> Callable[[web.RequestHandler, str], Awaitable[str | None]]:
    """The proxy's authorize callable on the dashboard origin (see dashboard_proxy)."""

    async def authorize(handler: web.RequestHandler, name: str) -> str | None:
        origin: DashboardOrigin = handler.settings[ORIGIN_SETTING]
        sessions: DashboardSessions = handler.settings[SESSIONS_SETTING]
        if not origin.host_serves(handler.request.host, name):
            raise wrong_host(name)
        session_id = handler.get_cookie(COOKIE)
        grant = sessions.session(session_id, name) if session_id else None
        if grant is None:
            # 403, not 401: no credentials sent here would help; the way in is the hub.
            raise web.HTTPError(
                403,
                "%s",
                "Open this dashboard from JupyterHub (the clusters page, your notebook's "
                "dashboard link or the lab's Dask clusters panel): this browser has no "
                "session for it here, or its session ended.",
            )
        try:
            await access.recheck(grant)
        except web.HTTPError:
            assert session_id is not None
            sessions.end(session_id)
            raise
        return grant.hub_origin

    return authorize


def make_dashboard_app(
    origin: DashboardOrigin, sessions: DashboardSessions, access: DashboardAccess
) -> web.Application:
    handlers: list[Any] = [(ENTER_PATH + r"([^/]+)", EnterHandler)]
    handlers += dashboard_routes("/")
    handlers.append((r".*", NotFoundHandler))
    return web.Application(
        handlers,
        websocket_ping_interval=30,
        **{
            ORIGIN_SETTING: origin,
            SESSIONS_SETTING: sessions,
            TARGET_SETTING: access.target,
            SECRET_SETTING: access.secret,
            AUTHORIZE_SETTING: session_authorizer(access),
        },
    )
