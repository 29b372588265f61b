"""Where the hubgate service is and how the single-user server authenticates to it."""

from __future__ import annotations

import os

from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from traitlets import Float, Unicode, default
from traitlets.config import Configurable


def _address_from_dask_config(key: str = "gateway.address") -> str:
    try:
        from hubgate.client.dask_config import config_value

        return str(config_value(key) or "")
    except ValueError:
        # A template naming an unset variable: treat as not configured; the handler says so.
        return ""


class HubgateUpstream(Configurable):
    """The hubgate service the sidebar talks to."""

    address = Unicode(
        help="""Address of the hubgate service's REST API including its prefix, e.g.
        http://127.0.0.1:8000/services/dask-gateway. Defaults to $DASK_GATEWAY__ADDRESS,
        else the dask config value gateway.address (what the notebook client uses).""",
    ).tag(config=True)

    api_token = Unicode(
        help="""JupyterHub API token sent to the service as `Authorization: token ...`.
        Defaults to $JUPYTERHUB_API_TOKEN, the single-user server's own token.""",
    ).tag(config=True)

    public_address = Unicode(
        help="""Address of the hubgate service as browsers reach it, the root of the
        dashboard links clients show (``<public_address>/clusters/<name>/status``), when it
        differs from ``address``. Defaults to $DASK_GATEWAY__PUBLIC_ADDRESS, else the dask
        config value gateway.public-address. dask-labextension's dashboard check of such a
        link asks the service for the cluster's plots with this server's token.""",
    ).tag(config=True)

    request_timeout = Float(
        90.0,
        help="""Seconds to wait for the service to answer one request (a cluster status
        request may long-poll with ?wait=).""",
    ).tag(config=True)

    @default("address")
    def _default_address(self) -> str:
        return os.environ.get("DASK_GATEWAY__ADDRESS") or _address_from_dask_config()

    @default("api_token")
    def _default_api_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    @default("public_address")
    def _default_public_address(self) -> str:
        return os.environ.get("DASK_GATEWAY__PUBLIC_ADDRESS") or _address_from_dask_config(
            "gateway.public-address"
        )

    def dashboard_addresses(self) -> list[str]:
        """Where this hub's dashboard links start: the public address and the address."""
        return [a for a in (self.public_address, self.address) if a]

    def url_for(self, path: str) -> str:
        return f"{self.address.rstrip('/')}/api/hubgate/{path.lstrip('/')}"

    async def fetch(
        self,
        path: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> HTTPResponse:
        """Call ``api/hubgate/<path>`` (``path`` may end in ``?query``) with this server's
        token. Any status comes back as a response; an unreachable service or a timeout
        raises ``OSError`` or ``tornado.httpclient.HTTPClientError``."""
        request = HTTPRequest(
            self.url_for(path),
            method=method,
            headers={
                **(headers or {}),
                "Authorization": f"token {self.api_token}",
                "Accept": "application/json",
            },
            body=body,
            request_timeout=self.request_timeout,
            follow_redirects=False,
        )
        return await AsyncHTTPClient().fetch(request, raise_error=False)
