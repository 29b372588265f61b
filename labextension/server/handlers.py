"""Handlers that forward the sidebar's requests to the hubgate service."""

from __future__ import annotations

import json
import re
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado.httpclient import HTTPClientError

from .upstream import HubgateUpstream

# Paths the service's hubgate API has: letters, digits and - _ . / only, never "..".
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]*$")
_FORWARDED_HEADERS = ("Content-Type",)


class HubgateProxyHandler(APIHandler):
    """``<base_url>/hubgate/<path>`` → ``<service>/api/hubgate/<path>``."""

    auth_resource = "hubgate"

    @property
    def upstream(self) -> HubgateUpstream:
        return self.settings["hubgate_upstream"]

    def _fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    async def _forward(self, path: str) -> None:
        if not _SAFE_PATH.match(path) or ".." in path.split("/"):
            self._fail(404, f"There is no hubgate API at {path!r}")
            return
        upstream = self.upstream
        if not upstream.address:
            self._fail(
                503,
                "The hubgate service address is not configured: set DASK_GATEWAY__ADDRESS "
                "(or gateway.address in the dask config) for the single-user server",
            )
            return
        if not upstream.api_token:
            self._fail(
                503,
                "This server has no JupyterHub API token (JUPYTERHUB_API_TOKEN) to call the "
                "hubgate service with; start it from JupyterHub",
            )
            return
        if self.request.query:
            path = f"{path}?{self.request.query}"
        headers = {
            n: self.request.headers[n] for n in _FORWARDED_HEADERS if n in self.request.headers
        }
        method = self.request.method or "GET"
        # tornado requires a body for POST and forbids one for GET/DELETE.
        body = (self.request.body or b"") if method == "POST" else None
        try:
            response = await upstream.fetch(path, method, headers, body)
        # raise_error=False still raises for connection failures and timeouts (599).
        except (OSError, HTTPClientError) as exc:
            self.log.warning("hubgate service at %s unreachable: %s", upstream.address, exc)
            self._fail(
                502,
                f"The hubgate service at {upstream.address} is unreachable ({exc}); "
                "it may be restarting: try again in a moment, or ask your administrator",
            )
            return
        self._pass_through(
            response.code, response.headers.get("Content-Type", ""), response.body or b""
        )

    def _pass_through(self, code: int, content_type: str, body: bytes) -> None:
        if 300 <= code < 400:
            # The service redirects browsers to log in; for this API that means our token
            # was not accepted.
            self._fail(
                502,
                "The hubgate service did not accept this server's token (it redirected to a login page)",
            )
            return
        self.set_status(code)
        if code == 204 or not body:
            self.finish()
            return
        if "json" in content_type:
            self.set_header("Content-Type", "application/json")
            self.finish(body)
            return
        # Not JSON (a proxy's error page): keep the status, give the sidebar a JSON message.
        text = body.decode("utf-8", "replace").strip()
        message = text[:300] if code < 400 else f"The hubgate service answered {code}: {text[:300]}"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message} if code >= 400 else {"text": message}))

    @tornado.web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        await self._forward(path)

    @tornado.web.authenticated
    @authorized
    async def post(self, path: str) -> None:
        await self._forward(path)

    @tornado.web.authenticated
    @authorized
    async def delete(self, path: str) -> None:
        await self._forward(path)


def setup_handlers(server_app: Any) -> None:
    web_app = server_app.web_app
    web_app.settings["hubgate_upstream"] = HubgateUpstream(parent=server_app)
    pattern = url_path_join(web_app.settings["base_url"], "hubgate", "(.*)")
    web_app.add_handlers(".*$", [(pattern, HubgateProxyHandler)])
    if server_app.jpserver_extensions.get("dask_labextension"):
        # dask-labextension's dashboard check, for hubgate's dashboard links.
        from .dashboard_check import add_dashboard_check

        add_dashboard_check(web_app)
