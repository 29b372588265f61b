"""Who is calling: every request is authenticated against JupyterHub.

Programs send their hub token (``Authorization: token|Bearer|jupyterhub <token>``; the
official dask-gateway client uses the last form); browsers carry the cookie of the hub's
OAuth flow. Both are checked by ``jupyterhub.services.auth.HubOAuth`` (with its cache),
and the token must hold the service's access scope. Admin powers come from one more
scope on the token (``HubgateService.admin_scope``, a custom JupyterHub scope that the
hub's roles grant), never from the user's hub record: a narrow token of an admin is not
an admin token.

After a token-authenticated request the service sets a short-lived cookie of its own,
so clients such as dask-gateway's skip the 401 round trip on their next reads. That
cookie never authorises a state-changing request: those need the token again (clients
re-send it on the 401) or, from a browser page, the hub's login cookie with its XSRF
token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from jupyterhub.services.auth import HubOAuth, check_scopes
from jupyterhub.utils import get_browser_protocol, url_path_join
from tornado.httpclient import HTTPClientError
from tornado.web import HTTPError, RequestHandler

from .errors import Forbidden, ServiceError
from .model import User

SESSION_COOKIE = "hubgate-session"
# The default admin scope; JupyterHub's custom scopes must start with "custom:".
ADMIN_SCOPE = "custom:hubgate:admin"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_AUTH_HEADER = re.compile(r"^\s*(token|bearer|jupyterhub)\s+(\S+)\s*$", re.IGNORECASE)


class Unauthorized(ServiceError):
    status_code = 401


SERVER_ACCESS = "access:servers!server="


def token_server(model: dict[str, Any]) -> str | None:
    """The name of the owner's single-user server whose own token this is ("" the
    default server), or None for any other token.

    The hub gives each server's token ``access:servers!server=<user>/<server>`` (its
    default ``server`` role has it; a hub that sets ``Spawner.server_token_scopes``
    lists ``access:servers!server``); tokens from /hub/token carry
    ``access:servers!user=<user>`` instead. A token that names several of its owner's
    servers belongs to none of them."""
    if model.get("kind", "user") != "user":
        return None
    owner = model.get("name")
    found = set()
    for scope in model.get("scopes") or ():
        if isinstance(scope, str) and scope.startswith(SERVER_ACCESS):
            user, _, server = scope[len(SERVER_ACCESS) :].partition("/")
            if user == owner:
                found.add(server)
    return found.pop() if len(found) == 1 else None


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
        admin_scope: str,
        session_max_age: float,
        hub_login_hint: str,
        secure_cookies: bool = False,
    ):
        self.hub_auth = hub_auth
        self.service_name = service_name
        self.service_prefix = service_prefix
        self.require_scope = require_scope
        self.admin_scope = admin_scope
        self.session_max_age = session_max_age
        self.hub_login_hint = hub_login_hint
        # The hub's public URL is https: every cookie is Secure, whatever the hops say.
        self.secure_cookies = secure_cookies
        self._sessions: dict[str, _Session] = {}
        self._user_info: dict[str, tuple[float, dict[str, Any]]] = {}

    @property
    def access_scopes(self) -> set[str]:
        return set(self.hub_auth.access_scopes) or {f"access:services!service={self.service_name}"}

    async def authenticate(self, handler: RequestHandler) -> User:
        header = handler.request.headers.get("Authorization")
        changes_state = handler.request.method not in SAFE_METHODS
        if header is None:
            user = None if changes_state else self._from_session(handler)
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
            if header is None:
                refusal = self._xsrf_refusal(handler)
                if refusal is not None:
                    raise Forbidden(refusal)
                if changes_state and handler.get_cookie(SESSION_COOKIE):
                    # 401, not 403: dask-gateway's client re-sends its token on a 401.
                    raise Unauthorized(
                        f"The {SESSION_COOKIE} cookie does not authorise "
                        f"{handler.request.method} requests: send your JupyterHub API token "
                        "as 'Authorization: token <token>' with every request that changes "
                        f"something (create one at {self.hub_login_hint})"
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

    def _xsrf_refusal(self, handler: RequestHandler) -> str | None:
        """Why HubOAuth ignored the hub's login cookie for want of a valid XSRF token
        (it requires one on every fetch()/XHR request, reads included, and on every
        request that changes state), or None when that is not the reason."""
        if not handler.get_cookie(self.hub_auth.cookie_name):
            return None
        try:
            # HubOAuthenticated handlers check with the hub's XSRF scheme
            handler.check_xsrf_cookie()
        except HTTPError:
            pass
        else:
            return None
        headers = handler.request.headers
        sent = (
            handler.get_argument("_xsrf", None)
            or headers.get("X-XSRFToken")
            or headers.get("X-CSRFToken")
        )
        if sent:
            return (
                "The XSRF token of this request does not match your JupyterHub login: "
                "reload the page to get a fresh one and send it in the X-XSRFToken header, "
                "or send 'Authorization: token <your JupyterHub API token>' instead"
            )
        return (
            "Your JupyterHub login cookie was not accepted because the request has no "
            "X-XSRFToken header: scripts in the browser must send the page's XSRF token "
            "with every API request (GET too) and with every request that changes "
            "something; programs send 'Authorization: token <your JupyterHub API token>'"
        )

    async def user_for_token(self, token: str) -> User | None:
        """Who holds ``token`` now (the hub's answer, cached for ``cache_max_age``), or
        ``None`` when it is no longer valid or lacks the service's access scope. For
        checks long after the request that presented it (dashboard sessions)."""
        try:
            model = await self.hub_auth.user_for_token(token, sync=False)
        except HTTPError as exc:
            raise ServiceError(
                "JupyterHub could not be reached to check your login; try again shortly",
                502,
            ) from exc
        if not model:
            return None
        if self.require_scope and not self.hub_auth.check_scopes(self.access_scopes, model):
            return None
        return await self._user_from_model(model)

    async def _user_from_model(self, model: dict[str, Any]) -> User:
        name = model["name"]
        if model.get("kind", "user") != "user":
            name = f"{model.get('kind')}:{name}"
        # Admin powers are the token's, not the account's: only the admin scope counts.
        admin = bool(check_scopes({self.admin_scope}, set(model.get("scopes") or ())))
        groups = tuple(model.get("groups") or ())
        # A narrow token may not show groups (limits need them): ask the hub with the
        # service's token.
        if model.get("kind", "user") == "user" and "groups" not in model:
            info = await self._lookup_user(model["name"])
            groups = tuple(info.get("groups") or groups)
        return User(name=name, admin=admin, groups=groups, server=token_server(model))

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
            secure=self.came_over_https(handler),
        )

    def came_over_https(self, handler: RequestHandler) -> bool:
        """Whether the browser or client used https to reach the hub: the hub's public
        URL says so, or the outermost proxy hop does (as for the hub's own cookies; a
        client that lies only makes its own cookie Secure)."""
        return self.secure_cookies or get_browser_protocol(handler.request) == "https"

    def _purge_sessions(self) -> None:
        now = time.monotonic()
        if len(self._sessions) > 1000:
            for key in [k for k, s in self._sessions.items() if s.expires < now]:
                del self._sessions[key]
