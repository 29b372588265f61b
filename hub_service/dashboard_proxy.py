"""Authenticated reverse proxy for the cluster dashboards, on the dashboard origin.

Mounted at ``/clusters/<name>/...`` of the dashboard listener (``dashboard_app.py``),
never on the service's origin. Every request (HTTP and websocket) is authorised first,
then forwarded **with its path unchanged** to the dashboard of the cluster's scheduler,
which runs with ``http_prefix=/clusters/<name>``, so Bokeh's absolute URLs and its
websocket path are right without any rewriting.

The handlers take callables from the tornado application settings:

``settings["hubgate_dashboard_target"](name) -> str | None``
    ``http://host:port`` of the dashboard of a RUNNING cluster, else ``None``.
``settings["hubgate_dashboard_authorize"](handler, name) -> Awaitable[str | None]``
    returns when the request may pass, with the origin allowed to embed the page
    (``None``: none); raises ``tornado.web.HTTPError`` (401/403/404) otherwise, or
    answers itself (``handler.finish()`` called). The rule is
    :func:`check_dashboard_access`.
``settings["hubgate_dashboard_secret"](name) -> str | None`` (optional)
    the cluster's dashboard secret, sent to the scheduler in ``X-Hubgate-Dashboard-Secret``
    (``hubgate/runtime/dashboard_guard.py``: the scheduler refuses requests without it).

What the scheduler answers is the cluster owner's content, hostile as far as the viewer
is concerned: its ``Set-Cookie`` headers are dropped, and every answer gets a content
security policy (:data:`CONTENT_SECURITY_POLICY`) that keeps it from being framed by
anything but the hub's origin, posting forms or connecting anywhere but its own origin.
The viewer's credentials never reach the scheduler: ``Cookie`` and ``Authorization``
are dropped.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import weakref
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from tornado import httputil, routing, web, websocket
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from ..runtime.dashboard_guard import SECRET_HEADER
from .unexpected import LogsUnexpectedErrors

__all__ = [
    "DashboardAuthorize",
    "DashboardHTTPProxyHandler",
    "DashboardTarget",
    "DashboardWebSocketProxyHandler",
    "check_dashboard_access",
    "content_security_policy",
    "dashboard_routes",
]

log = logging.getLogger("hubgate.dashboard_proxy")

DashboardTarget = Callable[[str], "str | None"]
DashboardAuthorize = Callable[[web.RequestHandler, str], Awaitable["str | None"]]
DashboardSecret = Callable[[str], "str | None"]

TARGET_SETTING = "hubgate_dashboard_target"
AUTHORIZE_SETTING = "hubgate_dashboard_authorize"
SECRET_SETTING = "hubgate_dashboard_secret"

# RFC 9110 §7.6.1 hop-by-hop headers, plus the ones a proxy must own itself.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Trailers",
        "Transfer-Encoding",
        "Upgrade",
    )
)
# The viewer's credentials: never forwarded to the user's scheduler. The secret header
# is the proxy's alone to set.
HUB_CREDENTIALS = frozenset(("cookie", "authorization", SECRET_HEADER.lower()))
# Never passed from the scheduler to the browser: a dashboard sets no cookie.
UPSTREAM_DROPPED = frozenset(("set-cookie", "set-cookie2"))
# Bokeh runs inline scripts and builds functions at run time ('unsafe-eval'), draws on
# canvases from blob: and data: images and styles itself inline; nothing else is needed
# from anywhere but the dashboard's own origin (its websocket included).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; "
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; "
    "font-src 'self' data:; "
    "connect-src 'self'; "
    "worker-src 'self' blob:; "
    "object-src 'none'; "
    "base-uri 'self'; "
    "form-action 'self'; "
    "frame-ancestors {frame_ancestors}"
)
# We read the whole request before the upstream could answer "100 Continue".
NOT_FORWARDED = frozenset(("expect",))
# Negotiated per hop by tornado's websocket code on each side.
WEBSOCKET_HANDSHAKE = frozenset(
    (
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    )
)
# Bokeh's document messages can be large; tornado's default limit is 10 MiB.
MAX_WEBSOCKET_MESSAGE = 64 * 1024 * 1024
MAX_PROXIED_BODY = 1024 * 1024 * 1024
CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 300.0
_ABNORMAL_CLOSE_CODES = frozenset((1005, 1006, 1015))


def cluster_not_running(cluster: str) -> web.HTTPError:
    return web.HTTPError(
        404,
        "%s",
        f"There is no running cluster named '{cluster}'. It may have been stopped or not "
        "be started yet; the clusters page lists the ones you can open.",
    )


def dashboard_unreachable(cluster: str) -> web.HTTPError:
    return web.HTTPError(
        502,
        "%s",
        f"The dashboard of cluster '{cluster}' is not answering. The cluster may be "
        "starting or shutting down; try again in a moment.",
    )


def check_dashboard_access(
    cluster: str, owner: str | None, viewer: str, viewer_is_admin: bool
) -> None:
    """The dashboard rule: only the cluster's owner and admins may open it.

    ``owner`` is ``None`` when there is no such cluster (or it is not running).
    Raises ``HTTPError`` 404 or 403 with a message for the user; returns otherwise.
    """
    if owner is None:
        raise cluster_not_running(cluster)
    if viewer != owner and not viewer_is_admin:
        raise web.HTTPError(
            403,
            "%s",
            "This dashboard belongs to another user. Only the cluster's owner and hub "
            "admins can open it.",
        )


def content_security_policy(embedder: str | None) -> str:
    """The policy of every proxied answer; ``embedder`` is the one origin that may frame
    it (the hub's, for JupyterLab's dashboard panes), else none may."""
    return CONTENT_SECURITY_POLICY.format(frame_ancestors=embedder or "'none'")


class _DashboardMixin:
    """Authorisation, target lookup, header building and error pages for both handlers."""

    request: httputil.HTTPServerRequest
    settings: dict[str, Any]
    path_kwargs: dict[str, str]
    _embedder: str | None = None

    @property
    def cluster_name(self) -> str:
        return self.path_kwargs["name"]

    async def _authorize_and_find_target(self) -> str | None:
        """The upstream ``http://host:port``, or ``None`` once a redirect was sent."""
        name = self.cluster_name
        self._embedder = await self.settings[AUTHORIZE_SETTING](self, name)
        if self._finished:  # type: ignore[attr-defined]
            return None
        target = self.settings[TARGET_SETTING](name)
        if not target:
            raise cluster_not_running(name)
        return target.rstrip("/")

    def _upstream_headers(self, skip: frozenset[str] = frozenset()) -> httputil.HTTPHeaders:
        incoming = self.request.headers
        connection_tokens = {
            token.strip().lower() for token in incoming.get("Connection", "").split(",")
        }
        drop = HOP_BY_HOP | HUB_CREDENTIALS | NOT_FORWARDED | connection_tokens | skip
        headers = httputil.HTTPHeaders()
        for key, value in incoming.get_all():
            if key.lower() not in drop:
                headers.add(key, value)
        forwarded_for = incoming.get("X-Forwarded-For")
        remote = self.request.remote_ip or ""
        headers["X-Forwarded-For"] = f"{forwarded_for}, {remote}" if forwarded_for else remote
        headers["X-Forwarded-Proto"] = incoming.get("X-Forwarded-Proto", self.request.protocol)
        headers["X-Forwarded-Host"] = incoming.get("X-Forwarded-Host", self.request.host)
        secret_of: DashboardSecret | None = self.settings.get(SECRET_SETTING)
        secret = secret_of(self.cluster_name) if secret_of else None
        if secret:
            headers[SECRET_HEADER] = secret
        return headers

    def _set_policy_headers(self) -> None:
        set_header = self.set_header  # type: ignore[attr-defined]
        set_header("Content-Security-Policy", content_security_policy(self._embedder))
        set_header("X-Content-Type-Options", "nosniff")
        # The dashboard's URLs stay on its origin.
        set_header("Referrer-Policy", "same-origin")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        write_error_answer(self, status_code, kwargs, content_security_policy(None))


def write_error_answer(
    handler: web.RequestHandler, status_code: int, kwargs: dict[str, Any], policy: str
) -> None:
    """A ``write_error`` for pages that browsers and programs both open: JSON for a
    caller that asks only for it, else a small escaped HTML page under ``policy``. An
    unexpected exception shows only its error id (see ``unexpected.py``)."""
    message = handler._reason
    exc = kwargs.get("exc_info", (None, None, None))[1]
    if isinstance(exc, web.HTTPError) and exc.log_message:
        message = exc.log_message % exc.args if exc.args else exc.log_message
    elif isinstance(handler, LogsUnexpectedErrors):
        message = handler.unexpected_error_text() or message
    accept = handler.request.headers.get("Accept", "")
    if "application/json" in accept and "text/html" not in accept:
        handler.set_header("Content-Type", "application/json")
        handler.finish(json.dumps({"error": message}))
        return
    handler.set_header("Content-Type", "text/html; charset=UTF-8")
    handler.set_header("Content-Security-Policy", policy)
    handler.finish(error_page(status_code, handler._reason, message))


def error_page(status_code: int, reason: str, message: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{status_code} {html.escape(reason)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;"
        "padding:0 1rem;color:#222}h1{font-size:1.4rem}p{line-height:1.5}</style>"
        f"</head><body><h1>{status_code} {html.escape(reason)}</h1>"
        f"<p>{html.escape(message)}</p></body></html>"
    )


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


_clients: weakref.WeakKeyDictionary[IOLoop, AsyncHTTPClient] = weakref.WeakKeyDictionary()


def _http_client() -> AsyncHTTPClient:
    """One client per event loop, with room for a dashboard's parallel requests."""
    loop = IOLoop.current()
    client = _clients.get(loop)
    if client is None:
        client = AsyncHTTPClient(
            force_instance=True, max_clients=64, max_body_size=MAX_PROXIED_BODY
        )
        _clients[loop] = client
    return client


@web.stream_request_body
class DashboardHTTPProxyHandler(_DashboardMixin, LogsUnexpectedErrors):
    """Plain HTTP to the dashboard: every method, bodies streamed both ways."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    _body_queue: asyncio.Queue[bytes | None] | None = None
    _upstream: asyncio.Task[None] | None = None

    def compute_etag(self) -> None:
        return None  # the upstream's validators pass through untouched

    async def prepare(self) -> None:
        target = await self._authorize_and_find_target()
        if target is None:
            return
        has_body = "Content-Length" in self.request.headers or (
            "Transfer-Encoding" in self.request.headers
        )
        if has_body:
            # Start forwarding now so the body streams through as it arrives.
            self._body_queue = asyncio.Queue(maxsize=4)
        self._upstream = asyncio.ensure_future(self._forward(target))

    async def data_received(self, chunk: bytes) -> None:
        if self._body_queue is not None:
            await self._body_queue.put(chunk)  # bounded: backpressure on the client

    async def _proxy(self, *args: str, **kwargs: str) -> None:
        if self._upstream is None:
            return
        if self._body_queue is not None:
            await self._body_queue.put(None)
        await self._upstream

    get = head = post = delete = patch = put = options = _proxy  # type: ignore[assignment]

    def on_connection_close(self) -> None:
        # Unblock a body producer waiting for chunks that will never come.
        if self._body_queue is not None and self._body_queue.empty():
            self._body_queue.put_nowait(None)

    async def _produce_body(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        assert self._body_queue is not None
        while (chunk := await self._body_queue.get()) is not None:
            await write(chunk)

    async def _forward(self, target: str) -> None:
        request = HTTPRequest(
            target + self.request.uri,
            method=self.request.method,
            headers=self._upstream_headers(),
            body_producer=self._produce_body if self._body_queue is not None else None,
            follow_redirects=False,
            decompress_response=False,
            allow_nonstandard_methods=True,
            connect_timeout=CONNECT_TIMEOUT,
            request_timeout=REQUEST_TIMEOUT,
            header_callback=self._on_upstream_header_line,
            streaming_callback=self._on_upstream_chunk,
        )
        self._upstream_start: httputil.ResponseStartLine | None = None
        self._upstream_headers_in = httputil.HTTPHeaders()
        try:
            await _http_client().fetch(request, raise_error=False)
        except (StreamClosedError, HTTPClientError, OSError) as exc:
            self._upstream_failed(exc)
            return
        if self._upstream_start is None:
            # No response at all (refused, timed out): ``fetch`` reports it as code 599.
            self._upstream_failed(None)

    def _on_upstream_header_line(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if self._upstream_start is None:
            if line.startswith("HTTP/"):
                self._upstream_start = httputil.parse_response_start_line(line)
                if self._upstream_start.code < 200:  # an interim 1xx: wait for the real one
                    self._upstream_start = None
            return
        if line:
            self._upstream_headers_in.parse_line(line)
            return
        # Blank line: the header block is complete; copy it to our response.
        start = self._upstream_start
        self.set_status(start.code, start.reason or None)
        for header in ("Content-Type", "Server", "Date"):
            self.clear_header(header)
        connection_tokens = {
            token.strip().lower()
            for token in self._upstream_headers_in.get("Connection", "").split(",")
        }
        dropped = HOP_BY_HOP | UPSTREAM_DROPPED | connection_tokens
        for key, value in self._upstream_headers_in.get_all():
            if key.lower() not in dropped:
                self.add_header(key, value)
        self._set_policy_headers()

    def _on_upstream_chunk(self, chunk: bytes) -> Awaitable[None] | None:
        stream = getattr(self.request.connection, "stream", None)
        if stream is None or stream.closed():
            raise StreamClosedError()  # the browser went away: stop reading upstream
        self.write(chunk)
        # Returning the flush future makes tornado wait before reading more upstream.
        flushed = self.flush()
        flushed.add_done_callback(_consume_exception)
        return flushed

    def _upstream_failed(self, exc: BaseException | None) -> None:
        if self._finished:
            return
        if self._headers_written:
            # Half a response is out; the only honest thing left is to cut it.
            log.warning("Dashboard %s: upstream broke mid-response: %s", self.cluster_name, exc)
            self.request.connection.close()  # type: ignore[attr-defined]
            return
        log.info("Dashboard %s unreachable: %r", self.cluster_name, exc)
        self.clear()
        raise dashboard_unreachable(self.cluster_name)


class DashboardWebSocketProxyHandler(
    _DashboardMixin, LogsUnexpectedErrors, websocket.WebSocketHandler
):
    """Websockets (Bokeh's ``/ws``) to the dashboard: both directions, text and binary,
    close codes passed on."""

    _upstream: websocket.WebSocketClientConnection | None = None
    _pump: asyncio.Task[None] | None = None

    @property
    def max_message_size(self) -> int:
        return MAX_WEBSOCKET_MESSAGE

    def check_origin(self, origin: str) -> bool:
        # Only the dashboard's own pages: the browser's Origin must be this very origin
        # (host and port), never another cluster's or the hub's.
        parsed = urlsplit(origin)
        return parsed.scheme in ("http", "https") and (
            parsed.netloc.lower() == self.request.host.lower()
        )

    async def get(self, *args: Any, **kwargs: Any) -> None:
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            raise web.HTTPError(
                403, "%s", "Dashboard websockets open only from the dashboard's own pages."
            )
        target = await self._authorize_and_find_target()
        if target is None:
            return
        url = "ws" + target[len("http") :] + self.request.uri
        subprotocols = [
            p.strip()
            for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        request = HTTPRequest(
            url,
            headers=self._upstream_headers(skip=WEBSOCKET_HANDSHAKE),
            connect_timeout=CONNECT_TIMEOUT,
            request_timeout=CONNECT_TIMEOUT,
        )
        try:
            self._upstream = await websocket.websocket_connect(
                request,
                subprotocols=subprotocols or None,
                max_message_size=MAX_WEBSOCKET_MESSAGE,
            )
        except (TimeoutError, HTTPClientError, OSError, StreamClosedError) as exc:
            log.info("Dashboard %s websocket unreachable: %s", self.cluster_name, exc)
            raise dashboard_unreachable(self.cluster_name) from None
        await super().get(*args, **kwargs)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        # Accept exactly what the dashboard accepted (Bokeh puts its session token here).
        return self._upstream.selected_subprotocol if self._upstream else None

    def open(self, *args: Any, **kwargs: Any) -> None:
        self._pump = asyncio.ensure_future(self._pump_from_upstream())

    async def _pump_from_upstream(self) -> None:
        upstream = self._upstream
        assert upstream is not None
        while (message := await upstream.read_message()) is not None:
            try:
                await self.write_message(message, binary=isinstance(message, bytes))
            except websocket.WebSocketClosedError:
                return
        code, reason = upstream.close_code, upstream.close_reason
        if code is None or code in _ABNORMAL_CLOSE_CODES:
            code, reason = 1011, "The dashboard closed the connection unexpectedly."
        self.close(code, reason)

    async def on_message(self, message: str | bytes) -> None:
        if self._upstream is None:
            return
        try:
            await self._upstream.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            self.close(1011, "The dashboard connection is closed.")

    def on_close(self) -> None:
        if self._upstream is not None:
            code = self.close_code
            if code is None or code in _ABNORMAL_CLOSE_CODES:
                self._upstream.close()
            else:
                self._upstream.close(code, self.close_reason)


class _WebSocketUpgrade(routing.Matcher):
    """The dashboard path, only for requests asking for a websocket upgrade."""

    def __init__(self, path: routing.PathMatches, upgrade: bool) -> None:
        self.path = path
        self.upgrade = upgrade

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        is_upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if is_upgrade != self.upgrade:
            return None
        return self.path.match(request)


def dashboard_path_pattern(prefix: str = "/") -> str:
    """``<prefix>clusters/(?P<name>[^/]+)(?P<path>/.*)?$``"""
    return re.escape(prefix.rstrip("/") + "/") + r"clusters/(?P<name>[^/]+)(?P<path>/.*)?$"


def dashboard_routes(prefix: str = "/") -> list[routing.Rule]:
    """Tornado rules for the proxy at ``<prefix>clusters/<name>/...`` (the dashboard
    origin uses ``/``); add them to the application's handlers.

    The websocket rule comes first and matches only upgrade requests.
    """
    path = routing.PathMatches(dashboard_path_pattern(prefix))
    return [
        routing.Rule(_WebSocketUpgrade(path, upgrade=True), DashboardWebSocketProxyHandler),
        routing.Rule(_WebSocketUpgrade(path, upgrade=False), DashboardHTTPProxyHandler),
    ]
