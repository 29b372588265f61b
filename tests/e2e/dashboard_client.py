"""A program opening dashboards the way a browser does: the entry URL on the service's
origin with a hub token, the ticket redirect to the dashboard origin, its cookie.

The hub runner's dashboard origins are ``http://<cluster>.localhost:<port>``; browsers
send every ``*.localhost`` name to loopback but this machine's resolver knows none of
them, so requests go to 127.0.0.1 with the name in the ``Host`` header.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urljoin, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

TIMEOUT = 60.0


def loopback_url(url: str) -> tuple[str, str]:
    """``url`` with its ``*.localhost`` host replaced by 127.0.0.1, and the Host header."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        netloc = f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1"
        return parts._replace(netloc=netloc).geturl(), parts.netloc
    return url, parts.netloc


async def fetch(url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> HTTPResponse:
    """One request, redirects not followed, errors as responses."""
    target, host = loopback_url(url)
    sent = {"Host": host, **(headers or {})}
    request = HTTPRequest(
        target, headers=sent, follow_redirects=False, request_timeout=TIMEOUT, **kwargs
    )
    return await AsyncHTTPClient().fetch(request, raise_error=False)


@dataclass
class DashboardVisit:
    """One viewer's visit: where the ticket took it and the cookies it holds there."""

    token: str
    cookies: dict[str, str] = field(default_factory=dict)
    enter_url: str = ""
    url: str = ""

    async def enter(self, entry_url: str, confirm: bool = False) -> HTTPResponse:
        """GET the entry URL with the token (POST, an admin's confirmation, with
        ``confirm``); follow the ticket redirect (keeping its cookie) to the dashboard
        page. Returns the last response."""
        response = await fetch(
            entry_url,
            {"Authorization": f"token {self.token}"},
            **({"method": "POST", "body": b""} if confirm else {}),
        )
        if response.code not in (302, 303):
            return response
        self.enter_url = urljoin(entry_url, response.headers["Location"])
        response = await self.redeem(self.enter_url)
        if response.code != 302:
            return response
        return await self.get(urljoin(self.enter_url, response.headers["Location"]))

    async def redeem(self, enter_url: str) -> HTTPResponse:
        response = await fetch(enter_url)
        for header in response.headers.get_list("Set-Cookie"):
            cookie = SimpleCookie()
            cookie.load(header.split(";", 1)[0])
            self.cookies.update({key: morsel.value for key, morsel in cookie.items()})
        return response

    def _cookie_header(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    async def get(self, url: str) -> HTTPResponse:
        self.url = url
        return await fetch(url, self._cookie_header())

    async def websocket(self, url: str, origin: str | None = None) -> WebSocketClientConnection:
        """Open a websocket on the dashboard origin (``origin`` defaults to its own)."""
        parts = urlsplit(url)
        target, host = loopback_url(url)
        headers = {"Host": host, "Origin": origin or f"{parts.scheme}://{parts.netloc}"}
        headers.update(self._cookie_header())
        ws_url = "ws" + target[len("http") :]
        request = HTTPRequest(ws_url, headers=headers, request_timeout=TIMEOUT)
        return await websocket_connect(request)


def open_dashboard(entry_url: str, token: str, confirm: bool = False) -> HTTPResponse:
    """:meth:`DashboardVisit.enter` for synchronous tests (runs its own event loop)."""

    async def visit() -> HTTPResponse:
        return await DashboardVisit(token).enter(entry_url, confirm)

    return asyncio.run(visit())
