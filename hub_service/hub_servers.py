"""Which single-user servers are running, as the hub says, read with the service's token.

One request lists every user with an active server, all their active servers included
(``GET /hub/api/users?state=active``; the hub pages it at ``api_page_max_limit``, 200 by
default, so a hub with more users active needs one request per 200 of them);
:meth:`HubServers.servers_of` asks about one user. The service's hub role needs the
scopes ``list:users`` and ``read:servers`` for both.

"Active" is the hub's word: a server starting, running, being checked after a hub
restart or stopping. A server is absent from the answer once it has stopped.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

# (user name, server name); "" is the user's default server
ServerKey = tuple[str, str]

NEEDED_SCOPES = ("list:users", "read:servers")
PAGINATION = "application/jupyterhub-pagination+json"


class HubRefused(Exception):
    """The hub will not tell the service about servers: its role lacks a scope."""


class HubUnavailable(Exception):
    """The hub could not be asked, or gave an answer that cannot be read."""


@dataclass(frozen=True)
class ServerList:
    """Every active server at one moment, and when the service asked.

    ``sent_at`` is the service's own clock (``time.time()``) when the first request
    left: the hub's answer describes a moment after it, so a cluster created before
    ``sent_at`` existed when the hub looked."""

    sent_at: float
    # active server -> when it started (the hub's ISO time; None if it did not say)
    started: dict[ServerKey, str | None]

    def with_user(self, user: str, servers: dict[str, str | None]) -> ServerList:
        """This list, with ``user``'s servers replaced by a later, direct answer."""
        started = {key: value for key, value in self.started.items() if key[0] != user}
        started.update({(user, name): value for name, value in servers.items()})
        return ServerList(self.sent_at, started)


class HubServers:
    """Reads servers from the hub's REST API (``api_url``: ``.../hub/api``);
    ``ssl_context``: the client certificate and CA of a hub with internal SSL."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        page_size: int = 200,
        timeout: float = 20.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.ssl_context = ssl_context
        self.page_size = page_size
        self.timeout = timeout

    async def check_access(self) -> None:
        """``HubRefused`` unless the service's token holds the scopes, unfiltered: with
        a filtered one the hub would hide users and their servers, and answer 404 for a
        user it hides as for one that does not exist."""
        model = await self._get("/user")
        scopes = set(model.get("scopes") or ()) if isinstance(model, dict) else set()
        missing = [scope for scope in NEEDED_SCOPES if scope not in scopes]
        if missing:
            raise HubRefused(
                f"the service's token lacks the scope(s) {', '.join(missing)} (for all "
                f"users, not filtered); its role needs {', '.join(NEEDED_SCOPES)}"
            )

    async def active(self) -> ServerList:
        """Every active server of every user."""
        sent_at = time.time()
        started: dict[ServerKey, str | None] = {}
        offset: int | None = 0
        while offset is not None:
            query = urlencode({"state": "active", "offset": offset, "limit": self.page_size})
            page = await self._get(f"/users?{query}")
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise HubUnavailable("the hub's user list is not a paginated list")
            for user in page["items"]:
                name = user.get("name") if isinstance(user, dict) else None
                if not isinstance(name, str):
                    raise HubUnavailable("the hub's user list holds a user without a name")
                for server, when in _servers_of(user).items():
                    started[(name, server)] = when
            offset = _next_offset(page, offset, len(page["items"]))
        return ServerList(sent_at, started)

    async def servers_of(self, user: str) -> dict[str, str | None]:
        """``user``'s active servers and when each started; none for a deleted user
        (with the scopes :meth:`check_access` checks, 404 means just that)."""
        model = await self._get(f"/users/{quote(user, safe='')}", missing_ok=True)
        return {} if model is None else _servers_of(model)

    async def _get(self, path: str, missing_ok: bool = False) -> Any:
        request = HTTPRequest(
            self.api_url + path,
            headers={"Authorization": f"token {self.token}", "Accept": PAGINATION},
            request_timeout=self.timeout,
            ssl_options=self.ssl_context,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as exc:
            raise HubUnavailable(f"cannot reach the hub at {self.api_url}: {exc}") from exc
        if response.code == 404 and missing_ok:
            return None
        if response.code == 403:
            raise HubRefused(
                f"the hub refused GET {path.split('?')[0]} (403): the service's role needs "
                f"the scopes {', '.join(NEEDED_SCOPES)}"
            )
        if response.code != 200:
            raise HubUnavailable(
                f"the hub answered GET {path.split('?')[0]} with {response.code} "
                f"{response.reason or ''}".rstrip()
            )
        try:
            return json.loads(response.body)
        except ValueError as exc:
            raise HubUnavailable(f"the hub's answer to GET {path} is not JSON") from exc


def _servers_of(user: dict[str, Any]) -> dict[str, str | None]:
    servers = user.get("servers")
    if not isinstance(servers, dict):
        # The hub leaves "servers" out of a user model it may not show them in.
        raise HubRefused(
            "the hub does not show users' servers to the service: its role needs the "
            f"scopes {', '.join(NEEDED_SCOPES)}"
        )
    return {
        str(name): (model.get("started") if isinstance(model, dict) else None)
        for name, model in servers.items()
    }


def _next_offset(page: dict[str, Any], offset: int, count: int) -> int | None:
    following = (page.get("_pagination") or {}).get("next")
    if not following or not count:
        return None
    value = following.get("offset")
    # never loop on the same page, whatever the hub says
    return value if isinstance(value, int) and value > offset else None
