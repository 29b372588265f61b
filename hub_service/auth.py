"""Who is calling: every request is authenticated against JupyterHub.

Programs send their hub token (``Authorization: token|Bearer|jupyterhub <token>``; the
official dask-gateway client uses the last form); browsers carry the cookie of the hub's
OAuth flow. Both are checked by ``jupyterhub.services.auth.HubOAuth`` (with its cache),
and the token must hold the service's access scope. After a token-authenticated request
the service sets a short-lived cookie of its own, so clients such as dask-gateway's skip
the 401 round trip on their next requests.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from jupyterhub.services.auth import HubOAuth
from jupyterhub.utils import url_path_join
from tornado.httpclient import HTTPClientError
from tornado.web import HTTPError, RequestHandler

from .errors import Forbidden, ServiceError
from .model import User

SESSION_COOKIE = "hubgate-session"
_AUTH_HEADER = re.compile(r"^\s*(token|bearer|jupyterhub)\s+(\S+)\s*$", re.IGNORECASE)


class Unauthorized(ServiceError):
    status_code = 401


class HubgateHubAuth(HubOAuth):
    """HubOAuth that also accepts the ``jupyterhub <token>`` scheme of dask-gateway's
    client."""

    auth_header_pat = re.compile(r"(?:token|bearer|jupyterhub)\s+(.+)", re.IGNORECASE)


@dataclass
class _Session:
    user: User
    expires: float


class Authenticator:
    """Turns a request into a :class:`User`, or raises a 401/403 that says what to do."""

    def __init__(
        self,
        hub_auth: HubgateHubAuth,
        *,
        service_name: str,
        service_prefix: str,
        require_scope: bool,
        admin_groups: set[str],
        session_max_age: float,
        hub_login_hint: str,
    ):
        self.hub_auth = hub_auth
        self.service_name = service_name
        self.service_prefix = service_prefix
        self.require_scope = require_scope
        self.admin_groups = admin_groups
        self.session_max_age = session_max_age
        self.hub_login_hint = hub_login_hint
        self._sessions: dict[str, _Session] = {}
        self._user_info: dict[str, tuple[float, dict[str, Any]]] = {}

    @property
    def access_scopes(self) -> set[str]:
        return set(self.hub_auth.access_scopes) or {f"access:services!service={self.service_name}"}

    async def authenticate(self, handler: RequestHandler) -> User:
        header = handler.request.headers.get("Authorization")
        if header is None:
            user = self._from_session(handler)
            if user is not None:
                return user
        elif not _AUTH_HEADER.match(header):
            raise Unauthorized(
                "The Authorization header is malformed; send "
                "'Authorization: token <your JupyterHub API token>'"
            )
        try:
            model = await self.hub_auth.get_user(handler, sync=False)
        except HTTPError as exc:
            raise ServiceError(
                "JupyterHub could not be reached to check your token; try again shortly",
                502,
            ) from exc
        if not model:
            if header is None and self._cookie_without_xsrf(handler):
                raise Forbidden(
                    "Your JupyterHub login cookie was not accepted because the request has "
                    "no X-XSRFToken header: scripts in the browser must send the page's XSRF "
                    "token with every API request (GET too)"
                )
            if header is not None:
                raise Unauthorized(
                    "Your JupyterHub API token is invalid or expired; create a new one at "
                    f"{self.hub_login_hint}"
                )
            raise Unauthorized(
                "Authentication required: send your JupyterHub API token as "
                f"'Authorization: token <token>' (create one at {self.hub_login_hint})"
            )
        if self.require_scope and not self.hub_auth.check_scopes(self.access_scopes, model):
            # Name the scope for this service, not the broad access:services.
            scope = f"access:services!service={self.service_name}"
            raise Forbidden(
                f"Your token does not grant access to the service {self.service_name!r}: it "
                f"needs the scope {scope}. Ask your hub's admin to grant it, or create a "
                f"token with that scope at {self.hub_login_hint}"
            )
        user = await self._user_from_model(model)
        if header is not None:
            self._start_session(handler, user)
        return user

    def _cookie_without_xsrf(self, handler: RequestHandler) -> bool:
        """A hub login cookie that HubOAuth ignored for want of an XSRF token (it
        requires one on every fetch()/XHR request, reads included)."""
        if not handler.get_cookie(self.hub_auth.cookie_name):
            return False
        headers = handler.request.headers
        mode = headers.get("Sec-Fetch-Mode", "unspecified")
        if handler.request.method in ("GET", "HEAD", "OPTIONS") and mode in (
            "navigate",
            "unspecified",
        ):
            return False  # HubOAuth needs no token here: the cookie itself was refused
        return not (
            handler.get_argument("_xsrf", None)
            or headers.get("X-XSRFToken")
            or headers.get("X-CSRFToken")
        )

    async def _user_from_model(self, model: dict[str, Any]) -> User:
        name = model["name"]
        if model.get("kind", "user") != "user":
            name = f"{model.get('kind')}:{name}"
        admin = bool(model.get("admin"))
        groups = tuple(model.get("groups") or ())
        # A narrow token may not show admin/groups: ask the hub with the service's token.
        if model.get("kind", "user") == "user" and ("groups" not in model or "admin" not in model):
            info = await self._lookup_user(model["name"])
            admin = admin or bool(info.get("admin"))
            groups = tuple(info.get("groups") or groups)
        admin = admin or bool(self.admin_groups.intersection(groups))
        return User(name=name, admin=admin, groups=groups)

    async def _lookup_user(self, name: str) -> dict[str, Any]:
        cached = self._user_info.get(name)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        url = url_path_join(self.hub_auth.api_url, "users", name)
        try:
            info = await self.hub_auth._api_request("GET", url, allow_403=True) or {}
        except (HTTPError, HTTPClientError, OSError):
            info = {}
        self._user_info[name] = (time.monotonic() + 60, info)
        return info

    def _from_session(self, handler: RequestHandler) -> User | None:
        value = handler.get_cookie(SESSION_COOKIE)
        if not value:
            return None
        session = self._sessions.get(hashlib.sha256(value.encode()).hexdigest())
        if session is None or session.expires < time.monotonic():
            return None
        return session.user

    def _start_session(self, handler: RequestHandler, user: User) -> None:
        self._purge_sessions()
        value = secrets.token_urlsafe(24)
        key = hashlib.sha256(value.encode()).hexdigest()
        self._sessions[key] = _Session(user, time.monotonic() + self.session_max_age)
        handler.set_cookie(
            SESSION_COOKIE,
            value,
            path=self.service_prefix,
            max_age=int(self.session_max_age),
            httponly=True,
            samesite="Strict",
        )

    def _purge_sessions(self) -> None:
        now = time.monotonic()
        if len(self._sessions) > 1000:
            for key in [k for k, s in self._sessions.items() if s.expires < now]:
                del self._sessions[key]
