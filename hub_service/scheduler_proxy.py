"""The scheduler proxy: one TCP port in front of every cluster's scheduler, routed by SNI.

A client (``gateway://host:port/<name>``) opens TCP to this port and starts TLS with the
server name ``daskgateway-<name>``. The proxy reads the ClientHello, takes the name out
of its ``server_name`` extension, looks it up in the route table and, from then on,
copies bytes both ways without ever terminating TLS: client and scheduler authenticate
each other end to end.

The accept and the ClientHello run on the service's event loop. Once a connection is
routed, its two directions are pumped by two threads with ``os.splice`` through a pipe
(zero copy, the GIL released while waiting), as Go's ``io.Copy`` does in dask-gateway's
proxy, so task traffic never competes with the service's event loop. Where ``os.splice``
does not exist the threads copy through a buffer instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
import threading
from collections.abc import Callable

__all__ = [
    "ClientHelloError",
    "IncompleteClientHello",
    "SchedulerProxy",
    "parse_target",
    "read_sni",
]

log = logging.getLogger("hubgate.hub_service.scheduler_proxy")

SNI_PREFIX = "daskgateway-"

# A TLS record carries at most 2**14 bytes of plaintext (RFC 8446 5.1). A ClientHello
# with post-quantum key shares is ~2 KiB; 64 KiB leaves room for anything legitimate.
_MAX_RECORD = 2**14
_MAX_HELLO = 2**16
_RECV_SIZE = 2**14

_HANDSHAKE = 22
_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_HOST_NAME = 0

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PIPE_SIZE = 2**20
_COPY_BUFFER = 2**18
_HAS_SPLICE = hasattr(os, "splice")


class ClientHelloError(ValueError):
    """The bytes are not a TLS ClientHello (the text says why, for the log)."""


class IncompleteClientHello(Exception):
    """More bytes are needed to finish the ClientHello."""


def read_sni(data: bytes) -> str | None:
    """The server name in the TLS ClientHello at the start of ``data``.

    Returns ``None`` when the ClientHello has no ``server_name``. Raises
    :class:`IncompleteClientHello` when ``data`` ends before the ClientHello does, and
    :class:`ClientHelloError` when it is not a ClientHello (or too big to be one). The
    handshake message may span several records, as RFC 8446 allows.
    """
    handshake = bytearray()
    pos = 0
    needed = 4  # the handshake header, until it is known how long the message is
    while len(handshake) < needed:
        if len(data) < pos + 1:
            raise IncompleteClientHello
        if data[pos] != _HANDSHAKE:
            raise ClientHelloError("not a TLS handshake")
        if len(data) < pos + 5:
            raise IncompleteClientHello
        major, length = data[pos + 1], int.from_bytes(data[pos + 3 : pos + 5])
        if major != 3:
            raise ClientHelloError("not a TLS handshake")
        if length == 0 or length > _MAX_RECORD:
            raise ClientHelloError(f"bad TLS record length {length}")
        if len(data) < pos + 5 + length:
            raise IncompleteClientHello
        handshake += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if needed == 4 and len(handshake) >= 4:
            if handshake[0] != _CLIENT_HELLO:
                raise ClientHelloError("first handshake message is not a ClientHello")
            needed = 4 + int.from_bytes(handshake[1:4])
            if needed > _MAX_HELLO:
                raise ClientHelloError(f"ClientHello of {needed} bytes is too big")
    return _server_name(memoryview(handshake)[4:needed])


class _Cursor:
    """Bounds-checked reading of TLS's length-prefixed fields."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ClientHelloError("truncated ClientHello")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self, size: int) -> int:
        return int.from_bytes(self.take(size))

    def vector(self, size: int) -> memoryview:
        return self.take(self.integer(size))

    def at_end(self) -> bool:
        return self.pos >= len(self.data)


def _server_name(body: memoryview) -> str | None:
    hello = _Cursor(body)
    hello.take(2 + 32)  # legacy_version, random
    hello.vector(1)  # legacy_session_id
    hello.vector(2)  # cipher_suites
    hello.vector(1)  # legacy_compression_methods
    if hello.at_end():
        return None  # no extensions at all (TLS 1.0-era clients)
    extensions = _Cursor(hello.vector(2))
    while not extensions.at_end():
        ext_type = extensions.integer(2)
        ext_data = extensions.vector(2)
        if ext_type != _EXT_SERVER_NAME:
            continue
        names = _Cursor(_Cursor(ext_data).vector(2))
        while not names.at_end():
            name_type = names.integer(1)
            name = names.vector(2)
            if name_type == _HOST_NAME:
                try:
                    return bytes(name).decode("ascii")
                except UnicodeDecodeError:
                    raise ClientHelloError("server name is not ASCII") from None
        return None
    return None


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


def _pump_splice(src: socket.socket, dst: socket.socket) -> None:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):  # bigger pipe, fewer calls; fine if refused
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, _PIPE_SIZE)
        src_fd, dst_fd = src.fileno(), dst.fileno()
        while True:
            n = os.splice(src_fd, write_end, _PIPE_SIZE, flags=os.SPLICE_F_MOVE)
            if n == 0:
                return
            while n:
                n -= os.splice(read_end, dst_fd, n, flags=os.SPLICE_F_MOVE)
    finally:
        os.close(read_end)
        os.close(write_end)


def _pump_copy(src: socket.socket, dst: socket.socket) -> None:
    buffer = bytearray(_COPY_BUFFER)
    view = memoryview(buffer)
    while True:
        n = src.recv_into(buffer)
        if n == 0:
            return
        dst.sendall(view[:n])


class _Relay:
    """Two threads copying bytes between a client and its scheduler.

    End of stream in one direction is passed on as a half-close; an error in either
    direction tears down both. The sockets are closed when both threads are done.
    """

    def __init__(
        self,
        name: str,
        client: socket.socket,
        upstream: socket.socket,
        on_done: Callable[[_Relay], None],
    ) -> None:
        self.name = name
        self._sockets = (client, upstream)
        self._on_done = on_done
        self._lock = threading.Lock()
        self._running = 2
        self._closed = False
        pump = _pump_splice if _HAS_SPLICE else _pump_copy
        self.threads = [
            threading.Thread(
                target=self._run,
                args=(pump, client, upstream),
                name=f"hubgate-proxy-{name}-up",
                daemon=True,
            ),
            threading.Thread(
                target=self._run,
                args=(pump, upstream, client),
                name=f"hubgate-proxy-{name}-down",
                daemon=True,
            ),
        ]

    def start(self) -> None:
        for sock in self._sockets:
            sock.setblocking(True)
        for thread in self.threads:
            thread.start()

    def _run(
        self,
        pump: Callable[[socket.socket, socket.socket], None],
        src: socket.socket,
        dst: socket.socket,
    ) -> None:
        try:
            pump(src, dst)
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.EBADF, errno.ENOTCONN):
                log.debug("scheduler proxy: relay for %s failed: %s", self.name, exc)
            self.abort()
        else:
            self._shutdown(dst, socket.SHUT_WR)
        with self._lock:
            self._running -= 1
            last = self._running == 0
            if last:
                self._closed = True
                for sock in self._sockets:
                    sock.close()
        if last:
            self._on_done(self)

    def _shutdown(self, sock: socket.socket, how: int) -> None:
        # Under the lock, so a socket is never shut down after another thread closed it
        # (its descriptor number could belong to a new connection by then).
        with self._lock:
            if not self._closed:
                with contextlib.suppress(OSError):
                    sock.shutdown(how)

    def abort(self) -> None:
        """Wake both threads and make them finish (used on errors and on stop)."""
        for sock in self._sockets:
            self._shutdown(sock, socket.SHUT_RDWR)


class SchedulerProxy:
    """Route TLS connections to schedulers by SNI, without terminating TLS.

    ``set_route(name, "host:port")`` makes ``daskgateway-<name>`` reach that scheduler;
    ``remove_route(name)`` stops routing new connections to it (connections already
    relayed go on until either side closes them).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8786,
        *,
        hello_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        backlog: int = 1024,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.hello_timeout = hello_timeout
        self.connect_timeout = connect_timeout
        self.backlog = backlog
        self._routes: dict[str, str] = {}
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._relays: set[_Relay] = set()
        self._relays_lock = threading.Lock()

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

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the real one when 0 was asked for)."""
        if self._listener is None:
            return self._requested_port
        return self._listener.getsockname()[1]

    @property
    def address(self) -> str:
        """``host:port`` as a client should dial it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def active_connections(self) -> int:
        """Connections being relayed right now."""
        with self._relays_lock:
            return len(self._relays)

    async def start(self) -> None:
        if self._listener is not None:
            return
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
        self._listener = listener
        self._accept_task = asyncio.create_task(self._accept_loop(listener))
        log.info("scheduler proxy listening on %s", self.address)

    async def stop(self) -> None:
        """Stop listening, drop connections in progress and every relayed connection."""
        if self._listener is None:
            return
        listener, self._listener = self._listener, None
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
            self._accept_task = None
        listener.close()
        for task in list(self._handshakes):
            task.cancel()
        await asyncio.gather(*self._handshakes, return_exceptions=True)
        with self._relays_lock:
            relays = list(self._relays)
        for relay in relays:
            relay.abort()
        threads = [t for relay in relays for t in relay.threads]
        await asyncio.to_thread(_join_all, threads)

    async def __aenter__(self) -> SchedulerProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- connections -------------------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:
                # EMFILE and friends: say so, back off a little, keep serving.
                log.warning("scheduler proxy: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._handle(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handle(self, conn: socket.socket) -> None:
        peer = _peer_name(conn)
        upstream: socket.socket | None = None
        try:
            try:
                async with asyncio.timeout(self.hello_timeout):
                    data, sni = await self._read_client_hello(conn)
            except TimeoutError:
                raise _Refused(f"no TLS ClientHello within {self.hello_timeout:g} s") from None
            if sni is None:
                raise _Refused("the TLS ClientHello has no server name (SNI)")
            if not sni.startswith(SNI_PREFIX):
                raise _Refused(f"server name {sni!r} does not start with {SNI_PREFIX!r}")
            name = sni[len(SNI_PREFIX) :]
            target = self._routes.get(name)
            if target is None:
                raise _Refused(f"no running cluster named {name!r}")
            upstream = await self._connect(name, target)
            await asyncio.get_running_loop().sock_sendall(upstream, data)
        except _Refused as exc:
            log.warning("scheduler proxy: refused connection from %s: %s", peer, exc)
            _close(conn, upstream)
            return
        except asyncio.CancelledError:
            _close(conn, upstream)
            raise
        except OSError as exc:
            log.warning("scheduler proxy: connection from %s failed: %s", peer, exc)
            _close(conn, upstream)
            return
        _tune(conn)
        _tune(upstream)
        relay = _Relay(name, conn, upstream, self._relay_done)
        with self._relays_lock:
            self._relays.add(relay)
        relay.start()

    def _relay_done(self, relay: _Relay) -> None:
        with self._relays_lock:
            self._relays.discard(relay)

    async def _read_client_hello(self, conn: socket.socket) -> tuple[bytes, str | None]:
        loop = asyncio.get_running_loop()
        data = b""
        while True:
            chunk = await loop.sock_recv(conn, _RECV_SIZE)
            if not chunk:
                raise _Refused("closed before a complete TLS ClientHello")
            data += chunk
            try:
                return data, read_sni(data)
            except IncompleteClientHello:
                if len(data) > _MAX_HELLO + 5 * (_MAX_HELLO // _MAX_RECORD + 1):
                    raise _Refused("TLS ClientHello too big") from None
            except ClientHelloError as exc:
                raise _Refused(f"not a TLS ClientHello ({exc})") from None

    async def _connect(self, name: str, target: str) -> socket.socket:
        loop = asyncio.get_running_loop()
        host, port = parse_target(target)
        try:
            async with asyncio.timeout(self.connect_timeout):
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
                f"scheduler of {name!r} at {target} did not accept within "
                f"{self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise _Refused(f"cannot reach the scheduler of {name!r} at {target}: {exc}") from None


class _Refused(Exception):
    """A connection the proxy closes, with the one line the log gets about it."""


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


def _join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=10)
