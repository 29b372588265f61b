"""The scheduler proxy: one TCP port in front of every cluster's scheduler, routed by SNI.

A client (``gateway://host:port/<name>``) opens TCP to this port and starts TLS with the
server name ``daskgateway-<name>``. The proxy reads the ClientHello, takes the name out
of its ``server_name`` extension, looks it up in the route table and, from then on,
copies bytes both ways without ever terminating TLS: client and scheduler authenticate
each other end to end.

Nothing of it runs on the service's event loop: accepting connections and reading
ClientHellos happen on a loop of the proxy's own, in its own thread, and routed
connections are relayed by a fixed number of relay threads (``proxy_relay``). A flood of
connections therefore costs the service neither loop time nor threads; what it can cost
in descriptors and memory is bounded by the caps in :class:`ProxyLimits`
(``proxy_admission``): connections over a cap are closed at once, ClientHellos that do
not arrive within ``hello_timeout`` are dropped, and relayed connections idle for
``idle_timeout`` are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import threading
from typing import Any

from .client_hello import (
    MAX_HELLO,
    MAX_RECORD,
    ClientHelloError,
    IncompleteClientHello,
    read_sni,
)
from .fd_limit import descriptors_for_connections
from .proxy_admission import Admission, ProxyLimits, address_key
from .proxy_relay import FDS_PER_RELAY, RelayPool
from .ratelimited_log import RateLimitedLog

__all__ = [
    "ClientHelloError",
    "IncompleteClientHello",
    "ProxyLimits",
    "SchedulerProxy",
    "parse_target",
    "read_sni",
]

log = logging.getLogger("hubgate.hub_service.scheduler_proxy")

SNI_PREFIX = "daskgateway-"

_RECV_SIZE = 2**14
# The most a ClientHello may take on the wire: MAX_HELLO bytes and a header per record.
_MAX_HELLO_BYTES = MAX_HELLO + 5 * (MAX_HELLO // MAX_RECORD + 1)


def parse_target(target: str) -> tuple[str, int]:
    """``"host:port"`` (or ``tls://host:port``, ``[::1]:port``) as ``(host, port)``."""
    address = target.removeprefix("tls://")
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"scheduler address {target!r} is not of the form host:port")
    return host, int(port)


def _tune(sock: socket.socket) -> None:
    # Small request/reply messages must not wait for Nagle; keepalive notices dead peers.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


class SchedulerProxy:
    """Route TLS connections to schedulers by SNI, without terminating TLS.

    ``set_route(name, "host:port")`` makes ``daskgateway-<name>`` reach that scheduler;
    ``remove_route(name)`` stops routing new connections to it (connections already
    relayed go on until either side closes them or they sit idle for ``idle_timeout``).
    ``start()`` and ``stop()`` are called from the service's loop; the routes may be
    changed from it at any time.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8786,
        *,
        limits: ProxyLimits | None = None,
        backlog: int = 1024,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.limits = limits or ProxyLimits()
        self.backlog = backlog
        self._routes: dict[str, str] = {}
        self._notes = RateLimitedLog(log)
        self._listener: socket.socket | None = None
        self._bound_port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._relays: RelayPool | None = None
        self._admission = Admission(self.limits)
        # Only touched on the proxy's own loop.
        self._accepting = False
        self._handshakes: set[asyncio.Task[None]] = set()

    # -- routes ------------------------------------------------------------------------

    def set_route(self, name: str, target: str) -> None:
        """Route ``daskgateway-<name>`` to ``target`` (``host:port``; ``tls://`` allowed)."""
        parse_target(target)
        self._routes[name] = target

    def remove_route(self, name: str) -> None:
        """Stop routing new connections for ``name`` (no error if there is no route)."""
        self._routes.pop(name, None)

    def routes(self) -> dict[str, str]:
        """A copy of the route table, ``name -> "host:port"``."""
        return dict(self._routes)

    # -- state -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the real one when 0 was asked for)."""
        return self._bound_port or self._requested_port

    @property
    def address(self) -> str:
        """``host:port`` as a client should dial it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def active_connections(self) -> int:
        """Connections being relayed right now."""
        return self._relays.active if self._relays is not None else 0

    @property
    def open_connections(self) -> int:
        """Client connections open right now: in their handshake or relayed."""
        return self._admission.connections

    @property
    def handshakes(self) -> int:
        """Client connections accepted and not yet routed."""
        return self._admission.handshakes

    @property
    def max_connections(self) -> int:
        """The overall connection cap in force (``max_connections``, or lower if the
        descriptor limit leaves room for fewer)."""
        return self._admission.max_connections

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        listener = await self._listen()
        self._bound_port = listener.getsockname()[1]
        self._admission = Admission(self.limits, self._fitting_max_connections())
        relays = RelayPool(self.limits.relay_threads, self.limits.idle_timeout, self._notes)
        relays.start()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=_run_loop, args=(loop,), name="hubgate-proxy-accept", daemon=True
        )
        thread.start()
        self._listener, self._relays, self._loop, self._thread = listener, relays, loop, thread
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._begin(listener), loop))
        log.info(
            "scheduler proxy listening on %s (at most %d connections, %d per address)",
            self.address,
            self.max_connections,
            self.limits.max_connections_per_address,
        )

    async def stop(self) -> None:
        """Stop listening, drop connections in progress and every relayed connection."""
        if self._thread is None or self._loop is None or self._relays is None:
            return
        thread, loop, relays = self._thread, self._loop, self._relays
        self._thread = None
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._end(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        await asyncio.to_thread(relays.stop)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def __aenter__(self) -> SchedulerProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _listen(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.host, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, sockaddr = infos[0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(sockaddr)
            listener.listen(self.backlog)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            raise OSError(
                exc.errno,
                f"scheduler proxy cannot listen on {self.host}:{self._requested_port}: "
                f"{exc.strerror}; choose another scheduler_proxy_address",
            ) from exc
        return listener

    def _fitting_max_connections(self) -> int:
        available = descriptors_for_connections()
        wanted = self.limits.max_connections
        if available is None:
            return wanted
        fitting = max(1, available // FDS_PER_RELAY)
        if wanted == 0 or wanted > fitting:
            log.warning(
                "scheduler proxy: the open-files limit leaves room for %d connections "
                "(%d descriptors each), so max_connections is %d instead of %s; raise the "
                "hard limit (ulimit -Hn, systemd's LimitNOFILE) to allow more",
                fitting,
                FDS_PER_RELAY,
                fitting,
                wanted or "no cap",
            )
            return fitting
        return wanted

    # -- on the proxy's loop -----------------------------------------------------------

    # Accepting is a reader callback, not a task awaiting loop.sock_accept: a task
    # cancelled by stop() just after the kernel handed it a connection drops that socket
    # unclosed, and here every accepted socket at once belongs to a handshake task.
    async def _begin(self, listener: socket.socket) -> None:
        self._accepting = True
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept_ready, listener)

    # The listener closes first, before any relayed connection: a client whose
    # connection ends reconnects at once, and must then be refused at connect rather
    # than queued on a listener that is about to close.
    async def _end(self) -> None:
        if self._listener is not None:
            if self._accepting:
                asyncio.get_running_loop().remove_reader(self._listener.fileno())
            _close_listener(self._listener)
            self._listener = None
        self._accepting = False
        tasks = list(self._handshakes)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _accept_ready(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.backlog):
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends: say so (once in a while) and stop reading for a
                # moment, so that a full descriptor table does not spin the loop.
                self._notes.warning("accept", "scheduler proxy: accept failed: %s", exc)
                loop.remove_reader(listener.fileno())
                loop.call_later(0.1, self._resume_accepting, listener)
                return
            conn.setblocking(False)
            self._admit(conn, peer)

    def _resume_accepting(self, listener: socket.socket) -> None:
        if self._accepting:
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept_ready, listener)

    def _admit(self, conn: socket.socket, peer: Any) -> None:
        key = address_key(peer[0]) if isinstance(peer, tuple) else str(peer)
        refusal = self._admission.admit(key)
        if refusal is not None:
            conn.close()
            self._notes.warning(
                refusal.cap,
                "scheduler proxy: refused a connection from %s at once: %s",
                key,
                refusal,
            )
            return
        task = asyncio.create_task(self._handle(conn, key))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)
        # stop() right after an accept cancels a task that never ran, so _handle's
        # cleanup never closes its socket; a cancelled handshake never relays it.
        task.add_done_callback(lambda t, conn=conn: conn.close() if t.cancelled() else None)

    async def _handle(self, conn: socket.socket, key: str) -> None:
        peer = _peer_name(conn)
        upstream: socket.socket | None = None
        relayed = False
        try:
            timeout = self.limits.hello_timeout
            try:
                async with asyncio.timeout(timeout):
                    data, sni = await self._read_client_hello(conn)
            except TimeoutError:
                raise _Refused("timeout", f"no TLS ClientHello within {timeout:g} s") from None
            if sni is None:
                raise _Refused("hello", "the TLS ClientHello has no server name (SNI)")
            if not sni.startswith(SNI_PREFIX):
                raise _Refused("hello", f"server name {sni!r} does not start with {SNI_PREFIX!r}")
            name = sni[len(SNI_PREFIX) :]
            target = self._routes.get(name)
            if target is None:
                raise _Refused("route", f"no running cluster named {name!r}")
            upstream = await self._connect(name, target)
            await asyncio.get_running_loop().sock_sendall(upstream, data)
            _tune(conn)
            _tune(upstream)
            assert self._relays is not None
            self._relays.add(
                name, conn, upstream, functools.partial(self._admission.connection_closed, key)
            )
            relayed = True
        except _Refused as exc:
            self._notes.warning(
                exc.kind, "scheduler proxy: refused connection from %s: %s", peer, exc
            )
        except OSError as exc:
            self._notes.warning(
                "failed", "scheduler proxy: connection from %s failed: %s", peer, exc
            )
        finally:
            self._admission.handshake_done(key)
            if not relayed:
                _close(conn, upstream)
                self._admission.connection_closed(key)

    async def _read_client_hello(self, conn: socket.socket) -> tuple[bytes, str | None]:
        loop = asyncio.get_running_loop()
        data = b""
        while True:
            chunk = await loop.sock_recv(conn, _RECV_SIZE)
            if not chunk:
                raise _Refused("hello", "closed before a complete TLS ClientHello")
            data += chunk
            try:
                return data, read_sni(data)
            except IncompleteClientHello:
                if len(data) > _MAX_HELLO_BYTES:
                    raise _Refused("hello", "TLS ClientHello too big") from None
            except ClientHelloError as exc:
                raise _Refused("hello", f"not a TLS ClientHello ({exc})") from None

    async def _connect(self, name: str, target: str) -> socket.socket:
        loop = asyncio.get_running_loop()
        host, port = parse_target(target)
        timeout = self.limits.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                last: OSError | None = None
                for family, type_, proto, _, sockaddr in infos:
                    sock = socket.socket(family, type_, proto)
                    sock.setblocking(False)
                    try:
                        await loop.sock_connect(sock, sockaddr)
                    except OSError as exc:
                        sock.close()
                        last = exc
                        continue
                    except BaseException:
                        sock.close()
                        raise
                    return sock
                raise last or OSError(f"no address for {host}")
        except TimeoutError:
            raise _Refused(
                "upstream",
                f"scheduler of {name!r} at {target} did not accept within {timeout:g} s",
            ) from None
        except OSError as exc:
            raise _Refused(
                "upstream", f"cannot reach the scheduler of {name!r} at {target}: {exc}"
            ) from None


class _Refused(Exception):
    """A connection the proxy closes, with the one line the log gets about it (``kind``
    groups such lines for rate limiting)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _close_listener(listener: socket.socket) -> None:
    """Close ``listener`` with an orderly end for the connections still in its queue.

    Closing a listener resets the connections the kernel queued on it. A client that
    wraps such a socket in TLS just then leaks it in CPython 3.11 (python/cpython#113280:
    ``ssl.SSLSocket`` raises on the reset and never closes itself), and the official
    client reconnects exactly then. Accepted and closed, those connections see an end of
    stream, which every client handles.
    """
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:  # BlockingIOError: the queue is empty
            break
        conn.close()
    listener.close()


def _peer_name(conn: socket.socket) -> str:
    try:
        peer = conn.getpeername()
    except OSError:
        return "?"
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _close(*socks: socket.socket | None) -> None:
    for sock in socks:
        if sock is not None:
            sock.close()
