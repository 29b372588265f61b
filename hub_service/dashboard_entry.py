"""The way in to a dashboard, on the service's origin: ``<prefix>clusters/<name>/...``.

That is the address dask-gateway's client builds (``dashboard_link = public_address +
dashboard_route``) and the one hubgate's API, widgets and lab panes show, but no
dashboard content is ever served here. The handler identifies the viewer (the hub's
OAuth, as the rest of the service), checks that the viewer is the cluster's owner or an
admin, and sends the browser to the same path on the dashboard origin with a
single-use ticket for (viewer, cluster) (``dashboard_app.py`` redeems it).

An admin opening someone else's dashboard first gets a confirmation page, and the
ticket only for its POST (with the hub's XSRF token): a hostile page cannot get an
admin a session on another user's dashboard by framing, fetching or opening this URL.
The page cannot be framed and keeps no opener.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tornado import web

from ..runtime.dashboard_guard import dashboard_prefix
from .auth import Unauthorized
from .dashboard_app import enter_url
from .dashboard_origin import DashboardOrigin
from .dashboard_proxy import check_dashboard_access, write_error_answer
from .dashboard_sessions import DashboardGrant, DashboardSessions
from .errors import ServiceError
from .handlers_base import HubAuthFromSettings
from .model import User
from .unexpected import LogsUnexpectedErrors

__all__ = ["DashboardEntry", "entry_routes"]

ENTRY_SETTING = "hubgate_dashboard_entry"


@dataclass(frozen=True)
class DashboardEntry:
    """What the entry handler needs from the service.

    ``origin`` is ``None`` when the operator configured no dashboard origin.
    ``authenticate(handler)`` gives the viewer or raises ``Unauthorized`` /
    ``ServiceError``; ``owner_of(name)`` is the owner of a RUNNING cluster, else
    ``None``; ``came_over_https(handler)`` tells the scheme the browser used.
    """

    origin: DashboardOrigin | None
    sessions: DashboardSessions
    authenticate: Callable[[web.RequestHandler], Awaitable[User]]
    owner_of: Callable[[str], str | None]
    came_over_https: Callable[[web.RequestHandler], bool]


class DashboardEntryHandler(HubAuthFromSettings, LogsUnexpectedErrors):
    """GET: redirect the owner (confirmation page for an admin); POST: the admin's
    confirmation."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST")

    @property
    def entry(self) -> DashboardEntry:
        return self.settings[ENTRY_SETTING]

    def get_current_user(self) -> Any:
        return None  # never HubAuthenticated's blocking lookup; we authenticate below

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Cross-Origin-Opener-Policy", "same-origin")
        self.set_header("Referrer-Policy", "no-referrer")

    async def get(self, name: str, path: str | None) -> None:
        viewer = await self._viewer(name)
        if viewer is None:
            return
        if viewer.name == self.entry.owner_of(name):
            self._send_to_dashboard(viewer, name, path)
            return
        self._confirmation_page(viewer, name)

    head = get

    async def post(self, name: str, path: str | None) -> None:
        viewer = await self._viewer(name)
        if viewer is not None:
            self._send_to_dashboard(viewer, name, path, status=303)

    async def _viewer(self, name: str) -> User | None:
        """The authorised viewer, or ``None`` once the browser was sent to log in."""
        if self.entry.origin is None:
            raise web.HTTPError(
                404,
                "%s",
                "Dashboards are not available on this hub: the service has no dashboard "
                "origin (HubgateService.dashboard_url). Ask the hub's operator to set it.",
            )
        try:
            viewer = await self.entry.authenticate(self)
        except Unauthorized:
            if self.request.method in ("GET", "HEAD"):
                self.redirect(self.get_login_url())
                return None
            raise web.HTTPError(401, "%s", "Log in to JupyterHub to open this dashboard.") from None
        except ServiceError as exc:
            raise web.HTTPError(exc.status_code, "%s", exc.message) from None
        check_dashboard_access(name, self.entry.owner_of(name), viewer.name, viewer.admin)
        return viewer

    def _send_to_dashboard(
        self, viewer: User, name: str, path: str | None, status: int = 302
    ) -> None:
        origin = self.entry.origin
        assert origin is not None
        scheme = "https" if self.entry.came_over_https(self) else "http"
        grant = DashboardGrant(
            cluster=name,
            viewer=viewer.name,
            admin=viewer.admin,
            token=self.hub_auth.get_token(self),
            hub_origin=f"{scheme}://{self.request.host}",
        )
        next_path = dashboard_prefix(name) + (path or "/")
        if self.request.query and self.request.method != "POST":
            next_path += "?" + self.request.query
        ticket = self.entry.sessions.issue_ticket(grant)
        self.redirect(enter_url(origin, name, ticket, next_path), status=status)

    def _confirmation_page(self, viewer: User, name: str) -> None:
        origin = self.entry.origin
        assert origin is not None
        owner = self.entry.owner_of(name) or ""
        dashboard_origin = origin.origin_for(name)
        self.set_header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
            f"form-action 'self' {dashboard_origin}; frame-ancestors 'none'",
        )
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(
            _CONFIRM_PAGE.format(
                owner=html.escape(owner),
                name=html.escape(name),
                viewer=html.escape(viewer.name),
                origin=html.escape(dashboard_origin),
                xsrf=html.escape(self.xsrf_token.decode("ascii"), quote=True),
            )
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        policy = "default-src 'none'; style-src 'unsafe-inline'"
        write_error_answer(self, status_code, kwargs, policy)


_CONFIRM_PAGE = """<!doctype html><html lang='en'><head><meta charset='utf-8'>
<title>Open {owner}'s dashboard?</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;
padding:0 1rem;color:#222}}h1{{font-size:1.4rem}}p{{line-height:1.5}}
button{{font-size:1rem;padding:.5rem 1rem}}</style></head><body>
<h1>Open {owner}'s dashboard as an admin?</h1>
<p>You are signed in as <b>{viewer}</b>. Cluster <code>{name}</code> belongs to
<b>{owner}</b>, and its dashboard shows whatever {owner}'s scheduler serves. It opens on
<code>{origin}</code>, apart from the hub, and cannot act with your hub login.</p>
<form method='post'><input type='hidden' name='_xsrf' value='{xsrf}'>
<button type='submit' id='open-dashboard'>Open the dashboard</button></form>
</body></html>
"""


def entry_routes(service_prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The entry handler at ``<prefix>clusters/<name>[/<path>]``."""
    prefix = service_prefix.rstrip("/") + "/"
    return [(prefix + r"clusters/([^/]+)(/.*)?$", DashboardEntryHandler)]
