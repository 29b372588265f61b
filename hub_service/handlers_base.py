"""What every HTTP handler of the service shares: authentication and JSON errors."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado.web import HTTPError, stream_request_body

from ..spawners.base import BackendError
from .errors import Invalid, ServiceError
from .model import Cluster, User
from .unexpected import LogsUnexpectedErrors

if TYPE_CHECKING:
    from .app import HubgateService

log = logging.getLogger("hubgate.api")


def reason_phrase(status: int, message: str) -> str | None:
    """The HTTP reason phrase for an error: the message itself for 401 and 403, which
    dask-gateway's client raises as ``ClientResponseError`` showing only the reason
    phrase (printable ASCII, as HTTP allows)."""
    if status not in (401, 403):
        return None
    text = "".join(c if " " <= c <= "~" else "?" for c in message)
    # tornado refuses a reason with "<" (defence against reflected markup)
    return text.replace("<", "[").replace(">", "]")[:400]


class HubAuthFromSettings(HubOAuthenticated):
    """HubOAuthenticated with the service's one ``HubOAuth`` (the application's
    ``hub_auth`` setting, its cache shared) instead of a new one per handler class."""

    @property
    def hub_auth(self) -> Any:  # type: ignore[override]
        return self.settings["hub_auth"]

    @hub_auth.setter
    def hub_auth(self, value: Any) -> None:
        pass


@stream_request_body
class BaseHandler(HubAuthFromSettings, LogsUnexpectedErrors):
    """Authenticates in ``prepare`` (unless ``public``) and answers errors as
    ``{"error": message}``: a :class:`ServiceError`'s message, or for an unexpected
    exception a 500 that quotes the error id under which its traceback was logged.

    Bodies are streamed in (after ``prepare``) and kept only up to the service's
    ``max_json_body_size``: a larger one is read to its end and thrown away, so that
    ``json_body`` can answer 413 with a JSON message (closing the connection early would
    lose the answer), and no memory is spent on it.
    """

    public = False
    user: User
    _body: bytearray | None = None
    _body_size = 0

    @property
    def service(self) -> HubgateService:
        return self.settings["hubgate_service"]

    def get_current_user(self) -> Any:
        # set by prepare(); never the blocking lookup of the mixin
        return getattr(self, "_hub_auth_user_cache", None)

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        if self.public:
            return
        try:
            self.user = await self.service.authenticator.authenticate(self)
        except ServiceError as exc:
            if exc.status_code == 401:
                self.set_header("WWW-Authenticate", 'token realm="JupyterHub"')
            self.refuse_after_body(exc.status_code, exc.message)
            return
        self._hub_auth_user_cache = {"name": self.user.name}
        self.service.manager.remember_user(self.user)

    def owns(self, cluster: Cluster) -> bool:
        """Whether the caller is the cluster's owner (an admin is not)."""
        return cluster.username == self.user.name

    @property
    def body_limit(self) -> int:
        """The most bytes of body this handler reads (override for another limit)."""
        return self.service.max_json_body_size

    def data_received(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self._body_size > self.body_limit:
            self._body = None
            return
        if self._body is None:
            self._body = bytearray()
        self._body += chunk

    def refuse_after_body(self, status: int, message: str) -> None:
        """Answer with an error in place of the handler's method, once the body is in.

        For ``prepare``: finishing there, before a streamed body is read, makes tornado
        close the connection with the body unread (the client may get a reset instead
        of the answer), and the hub's proxy may reuse the dead connection (503 "socket
        hang up"). Answering after the body keeps the connection, so no
        ``Connection: close`` is needed."""

        def refuse(*args: Any, **kwargs: Any) -> None:
            self.send_error_json(status, message)

        setattr(self, self.request.method.lower(), refuse)

    def send_error_json(self, status: int, message: str) -> None:
        self.set_status(status, reason=reason_phrase(status, message))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    def write_json(self, data: Any, status: int = 200) -> None:
        self.write_json_text(json.dumps(data), status)

    def write_json_text(self, text: str, status: int = 200) -> None:
        """Answer with ``text``, which is JSON already."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(text)

    def compute_etag(self) -> None:
        # Every answer is Cache-Control: no-store, so tornado's default ETag (a SHA-1 of
        # each whole body) would be work for nothing.
        return None

    def json_body(self, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The request's JSON object; an empty body is an empty object. With
        ``allowed``, other fields are refused (a typo must not be silently ignored)."""
        if self._body_size > self.body_limit:
            raise ServiceError(
                f"The request body is {self._body_size} bytes; this service accepts at most "
                f"{self.body_limit} bytes per request",
                413,
            )
        body = bytes(self._body or b"")
        if not body.strip():
            return {}
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ServiceError(f"The request body is not valid JSON: {exc}", 400) from None
        if not isinstance(data, dict):
            raise ServiceError(
                f"The request body must be a JSON object, got {type(data).__name__}", 400
            )
        unknown = sorted(set(data) - set(allowed)) if allowed is not None else []
        if unknown:
            raise Invalid(
                f"Unknown field(s) {', '.join(map(repr, unknown))} in the request body; "
                f"expected only {', '.join(allowed or ())}"
            )
        return data

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ServiceError):
            log.info(
                "%s %s -> %s: %s",
                self.request.method,
                self.request.path,
                value.status_code,
                value.message,
            )
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ServiceError):
            self.set_status(exc.status_code, reason=reason_phrase(exc.status_code, exc.message))
            message = exc.message
        elif isinstance(exc, HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code == 405:
            message = f"{self.request.method} is not allowed on {self.request.path}"
        elif isinstance(exc, BackendError):
            message = str(exc)  # written for users (see errors.py)
        elif status_code >= 500:
            message = (
                self.unexpected_error_text()
                or "The service failed to handle this request; the error is in its log"
            )
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))


class NotFoundHandler(BaseHandler):
    """Unknown paths under the service: a JSON 404 that points at the API."""

    public = True

    def prepare(self) -> None:  # type: ignore[override]
        prefix = self.service.service_prefix
        self.refuse_after_body(
            404,
            f"Not found: {self.request.path}. The API is under {prefix}api/ "
            f"(see {prefix}api/openapi.json)",
        )


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    """Completes the hub's OAuth login of a browser (the admin page, dashboards)."""

    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]
