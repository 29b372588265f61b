"""The clusters / admin web page, served at the service root.

The page is static HTML + vanilla JS (``static/``) that calls the service's JSON API
(``api/hubgate/...``) with the browser's cookie. The handler only authenticates the
browser (JupyterHub OAuth: redirect to the hub's login when there is no cookie) and
fills in two values: the service prefix and the XSRF token the page sends back in the
``X-XSRFToken`` header on POST/DELETE (HubOAuth refuses cookie-authenticated
state-changing requests without it).

Settings read:

``settings["hub_auth"]``
    the service's ``HubOAuth`` (else jupyterhub's ``HubOAuth.instance()``).
``settings["hubgate_page_user"]`` (optional)
    ``async (handler) -> dict | None``: who is viewing; defaults to HubOAuth's cookie
    user, checked against the service's access scopes.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from jupyterhub.services.auth import HubOAuth, HubOAuthenticated, UserNotAllowed
from tornado import template, web

from .dashboard_proxy import error_page
from .unexpected import LogsUnexpectedErrors

__all__ = ["STATIC_DIR", "ClustersPageHandler", "page_routes"]

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_templates = template.Loader(STATIC_DIR)  # caches the parsed page; autoescapes values

PageUser = Callable[[web.RequestHandler], Awaitable["dict[str, Any] | None"]]


async def hub_page_user(handler: ClustersPageHandler) -> dict[str, Any] | None:
    """The viewer according to JupyterHub, or ``None`` when not logged in."""
    user = await handler.hub_auth.get_user(handler, sync=False)
    if not user:
        return None
    try:
        return handler.check_hub_user(user)
    except UserNotAllowed:
        raise web.HTTPError(
            403,
            "Your hub account is not allowed to use this service; ask an admin for the "
            "access:services scope.",
        ) from None


class ClustersPageHandler(HubOAuthenticated, LogsUnexpectedErrors):
    """GET ``<service prefix>``: the clusters page."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        unexpected = self.unexpected_error_text()
        if unexpected is None:
            super().write_error(status_code, **kwargs)
            return
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(error_page(status_code, self._reason, unexpected))

    def initialize(self) -> None:
        hub_auth = self.settings.get("hub_auth")
        if isinstance(hub_auth, HubOAuth):
            self.hub_auth = hub_auth

    async def prepare(self) -> None:
        find_user: PageUser = self.settings.get("hubgate_page_user", hub_page_user)
        # Resolve the user asynchronously here; HubAuthenticated.get_current_user would
        # block the event loop on the hub round trip.
        self.current_user = await find_user(self)

    async def get(self) -> None:
        if not self.current_user:
            self.redirect(self.get_login_url())
            return
        prefix = self.hub_auth.base_url
        page = _templates.load("index.html").generate(
            base_url=prefix if prefix.endswith("/") else prefix + "/",
            xsrf=self.xsrf_token.decode("ascii"),
            hub_home=self.hub_auth.hub_prefix + "home",
            static_version=self._static_version(),
        )
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(page)

    @staticmethod
    def _static_version() -> str:
        # Busts browser caches when the page's assets change.
        return str(
            max(
                int(os.stat(os.path.join(STATIC_DIR, name)).st_mtime)
                for name in ("admin.js", "admin.css")
            )
        )


def page_routes(service_prefix: str) -> list[tuple[Any, ...]]:
    """The page at ``<prefix>`` and its assets at ``<prefix>static/``."""
    prefix = service_prefix.rstrip("/") + "/"
    return [
        (prefix, ClustersPageHandler),
        (prefix + "static/(.*)", web.StaticFileHandler, {"path": STATIC_DIR}),
    ]
