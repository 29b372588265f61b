"""A connection flood against the scheduler proxy, as a hostile hub user would send it.

``ProxyFlood`` keeps a fixed number of TCP connections open to the proxy port from a set
of loopback source addresses (``127.0.0.x``): *idle* ones that never send a byte, and
*slow* ones that send the start of a TLS ClientHello and then one more byte per
``trickle_interval`` (slowloris), never finishing it. A connection the proxy closes
(handshake timeout, cap) is opened again on the next tick, so the pressure holds for as
long as the flood runs. Everything runs in one thread over a selector; the loop is
bounded by ``max_seconds`` and every socket is closed on exit.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

_TICK = 0.1
_SLOW_PREFIX = 20  # bytes of the ClientHello a slow connection sends at once


def raise_open_files_limit() -> int:
    """This process's RLIMIT_NOFILE soft limit raised to the hard limit; the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class _Conn:
    sock: socket.socket
    source: str
    slow: bool
    connected: bool = False
    sent: int = 0


@dataclass
class FloodStats:
    opened: int = 0
    closed_by_proxy: int = 0
    connect_failures: int = 0
    established_idle: int = 0
    established_slow: int = 0
    samples: list[str] = field(default_factory=list)


class ProxyFlood:
    def __init__(
        self,
        port: int,
        hello: bytes,
        *,
        sources: list[str],
        idle_per_source: int,
        slow_per_source: int,
        trickle_interval: float = 1.0,
        max_seconds: float = 900,
    ) -> None:
        self.port = port
        self.hello = hello
        self.sources = sources
        self.idle_per_source = idle_per_source
        self.slow_per_source = slow_per_source
        self.trickle_interval = trickle_interval
        self.max_seconds = max_seconds
        self.stats = FloodStats()
        self._conns: dict[int, _Conn] = {}
        self._to_open: list[tuple[str, bool]] = []
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="proxy-flood", daemon=True)
        self.error: BaseException | None = None

    @property
    def wanted(self) -> int:
        return len(self.sources) * (self.idle_per_source + self.slow_per_source)

    def established(self) -> tuple[int, int]:
        """Connections open right now whose TCP handshake completed: (idle, slow)."""
        with self._lock:
            return self.stats.established_idle, self.stats.established_slow

    def open_sockets(self) -> int:
        with self._lock:
            return len(self._conns)

    def __enter__(self) -> ProxyFlood:
        for source in self.sources:
            self._to_open += [(source, False)] * self.idle_per_source
            self._to_open += [(source, True)] * self.slow_per_source
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            raise AssertionError("the flood thread did not stop")

    def wait_established(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(self.established()) < self.wanted:
            if self.error is not None:
                raise AssertionError(f"the flood failed: {self.error!r}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {self.established()} of {self.wanted} flood connections "
                    f"established after {timeout} s ({self.stats})"
                )
            time.sleep(0.2)

    # -- the flood thread --------------------------------------------------------------

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        next_trickle = time.monotonic() + self.trickle_interval
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self._open_pending()
                for key, _ in self._selector.select(_TICK):
                    self._event(key.data)
                if time.monotonic() >= next_trickle:
                    next_trickle += self.trickle_interval
                    self._trickle()
        except BaseException as exc:
            self.error = exc
        finally:
            with self._lock:
                conns, self._conns = list(self._conns.values()), {}
                self.stats.established_idle = self.stats.established_slow = 0
            for conn in conns:
                self._selector.unregister(conn.sock)
                conn.sock.close()
            self._selector.close()

    def _open_pending(self) -> None:
        pending, self._to_open = self._to_open, []
        for source, slow in pending:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.bind((source, 0))
                code = sock.connect_ex(("127.0.0.1", self.port))
            except OSError:
                sock.close()
                self.stats.connect_failures += 1
                self._to_open.append((source, slow))
                continue
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                self.stats.connect_failures += 1
                self._to_open.append((source, slow))
                continue
            conn = _Conn(sock, source, slow)
            with self._lock:
                self._conns[sock.fileno()] = conn
            self.stats.opened += 1
            self._selector.register(sock, selectors.EVENT_WRITE, conn)

    def _event(self, conn: _Conn) -> None:
        if not conn.connected:
            if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.stats.connect_failures += 1
                self._drop(conn)
                return
            conn.connected = True
            with self._lock:
                if conn.slow:
                    self.stats.established_slow += 1
                else:
                    self.stats.established_idle += 1
            if conn.slow:
                self._send(conn, _SLOW_PREFIX)
            if conn.sock.fileno() >= 0:
                self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            return
        # Readable: the proxy closed it (it never sends anything before a route).
        with contextlib.suppress(OSError):
            conn.sock.recv(1)
        self.stats.closed_by_proxy += 1
        self._drop(conn)

    def _send(self, conn: _Conn, n: int) -> None:
        n = min(n, len(self.hello) - 1 - conn.sent)  # never a complete ClientHello
        if n <= 0:
            return
        try:
            conn.sent += conn.sock.send(self.hello[conn.sent : conn.sent + n])
        except OSError:
            self.stats.closed_by_proxy += 1
            self._drop(conn)

    def _trickle(self) -> None:
        for conn in [c for c in list(self._conns.values()) if c.slow and c.connected]:
            self._send(conn, 1)

    def _drop(self, conn: _Conn) -> None:
        """Close ``conn`` and queue a new one from the same source."""
        with self._lock:
            self._conns.pop(conn.sock.fileno(), None)
            if conn.connected:
                if conn.slow:
                    self.stats.established_slow -= 1
                else:
                    self.stats.established_idle -= 1
        self._selector.unregister(conn.sock)
        conn.sock.close()
        if not self._stop.is_set():
            self._to_open.append((conn.source, conn.slow))
