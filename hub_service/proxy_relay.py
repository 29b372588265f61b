"""Relaying routed connections: a few threads, each moving bytes for many connections.

Each relay thread waits on one selector (epoll on Linux) for all of its connections and
moves bytes with ``os.splice`` through a pipe per direction (zero copy, the GIL released
in the system call), or through a buffer where ``os.splice`` does not exist. The number
of threads is fixed, so thousands of idle connections cost descriptors, not threads.

A direction reads from its source only when its pipe is empty and writes until the pipe
is empty again, waiting for the destination to take more when it is full: a slow reader
slows its writer down and nothing queues up in the proxy. End of stream one way is passed
on as a half-close; an error either way closes both sockets. A connection that moves no
byte either way for ``idle_timeout`` seconds is closed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable

from .ratelimited_log import RateLimitedLog

__all__ = ["FDS_PER_RELAY", "RelayPool"]

log = logging.getLogger("hubgate.hub_service.scheduler_proxy")

_HAS_SPLICE = hasattr(os, "splice")
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PIPE_SIZE = 2**20
_COPY_BUFFER = 2**16
# Steps one direction takes per wake-up before the thread serves its other connections.
_STEPS_PER_EVENT = 16
_QUIET_ERRNOS = (errno.ECONNRESET, errno.EPIPE, errno.EBADF, errno.ENOTCONN, errno.ETIMEDOUT)

# Two sockets, and two pipes of two descriptors each when splicing.
FDS_PER_RELAY = 6 if _HAS_SPLICE else 2


class _Direction:
    """Bytes one way, ``src`` to ``dst``."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.pending = 0  # bytes read from src and not yet written to dst
        self.done = False

    def wanted(self) -> tuple[socket.socket, int] | None:
        """The socket and event this direction waits for."""
        if self.done:
            return None
        if self.pending:
            return self.dst, selectors.EVENT_WRITE
        return self.src, selectors.EVENT_READ

    def step(self) -> bool:
        """Move what can be moved now; whether any byte moved. Raises OSError."""
        moved = False
        for _ in range(_STEPS_PER_EVENT):
            if self.pending:
                n = self._write()
                if n is None:
                    break
                self.pending -= n
                moved = True
                continue
            n = self._read()
            if n is None:
                break
            if n == 0:
                self.done = True
                with contextlib.suppress(OSError):  # the peer may be gone already
                    self.dst.shutdown(socket.SHUT_WR)
                break
            self.pending = n
            moved = True
        return moved

    def _read(self) -> int | None:
        raise NotImplementedError

    def _write(self) -> int | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the direction holds besides the sockets."""


class _SpliceDirection(_Direction):
    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        super().__init__(src, dst)
        self._read_end, self._write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        with contextlib.suppress(OSError):  # a bigger pipe, fewer calls; fine if refused
            fcntl.fcntl(self._write_end, _F_SETPIPE_SZ, _PIPE_SIZE)
        self._flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK

    def _read(self) -> int | None:
        try:
            return os.splice(self.src.fileno(), self._write_end, _PIPE_SIZE, flags=self._flags)
        except BlockingIOError:
            return None

    def _write(self) -> int | None:
        try:
            return os.splice(self._read_end, self.dst.fileno(), self.pending, flags=self._flags)
        except BlockingIOError:
            return None

    def close(self) -> None:
        os.close(self._read_end)
        os.close(self._write_end)


class _CopyDirection(_Direction):
    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        super().__init__(src, dst)
        self._buffer = bytearray(_COPY_BUFFER)
        self._view = memoryview(self._buffer)
        self._offset = 0

    def _read(self) -> int | None:
        try:
            n = self.src.recv_into(self._buffer)
        except BlockingIOError:
            return None
        self._offset = 0
        return n

    def _write(self) -> int | None:
        try:
            n = self.dst.send(self._view[self._offset : self._offset + self.pending])
        except BlockingIOError:
            return None
        self._offset += n
        return n


class Relay:
    """One routed connection: the client, its scheduler, and a direction each way."""

    def __init__(
        self,
        name: str,
        client: socket.socket,
        upstream: socket.socket,
        on_done: Callable[[Relay], None],
    ) -> None:
        self.name = name
        self.client = client
        self.upstream = upstream
        self.on_done = on_done
        direction = _SpliceDirection if _HAS_SPLICE else _CopyDirection
        self.directions = [direction(client, upstream)]
        try:
            self.directions.append(direction(upstream, client))
        except BaseException:
            self.directions[0].close()
            raise
        self.last_active = time.monotonic()
        self.closed = False

    def interest(self, sock: socket.socket) -> int:
        """The events the relay waits for on ``sock``."""
        events = 0
        for direction in self.directions:
            wanted = direction.wanted()
            if wanted is not None and wanted[0] is sock:
                events |= wanted[1]
        return events

    def finished(self) -> bool:
        return all(d.done for d in self.directions)


class _RelayThread(threading.Thread):
    def __init__(self, index: int, idle_timeout: float, notes: RateLimitedLog) -> None:
        super().__init__(name=f"hubgate-proxy-relay-{index}", daemon=True)
        self.idle_timeout = idle_timeout
        self.notes = notes
        self.load = 0  # relays handed to this thread and not finished (the pool's lock)
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        for fd in (self._wake_read, self._wake_write):
            os.set_blocking(fd, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._incoming: queue.SimpleQueue[Relay] = queue.SimpleQueue()
        self._relays: set[Relay] = set()
        self._masks: dict[socket.socket, int] = {}
        self._stopping = False

    def add(self, relay: Relay) -> None:
        self._incoming.put(relay)
        self._wake()

    def stop(self) -> None:
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already woken
            os.write(self._wake_write, b"x")

    def run(self) -> None:
        sweep = min(max(self.idle_timeout / 4, 0.05), 10.0) if self.idle_timeout else None
        next_sweep = time.monotonic() + (sweep or 0)
        try:
            while not self._stopping:
                timeout = None if sweep is None else max(0.0, next_sweep - time.monotonic())
                for key, events in self._selector.select(timeout):
                    if key.data is None:
                        self._take_incoming()
                    else:
                        self._serve(key.data, key.fileobj, events)  # type: ignore[arg-type]
                if sweep is not None and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + sweep
                    self._close_idle()
        finally:
            self._take_incoming()
            for relay in list(self._relays):
                self._close(relay)
            self._selector.close()
            os.close(self._wake_read)
            os.close(self._wake_write)

    def _take_incoming(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 4096):
                pass
        while True:
            try:
                relay = self._incoming.get_nowait()
            except queue.Empty:
                return
            self._relays.add(relay)
            self._update(relay)

    def _serve(self, relay: Relay, sock: socket.socket, events: int) -> None:
        if relay.closed:
            return
        try:
            moved = False
            for direction in relay.directions:
                wanted = direction.wanted()
                if wanted is not None and wanted[0] is sock and wanted[1] & events:
                    moved |= direction.step()
        except OSError as exc:
            if exc.errno not in _QUIET_ERRNOS:
                log.debug("scheduler proxy: relay for %s failed: %s", relay.name, exc)
            self._close(relay)
            return
        except Exception:
            # A bug must cost one connection, not every connection of this thread.
            log.exception("scheduler proxy: relay for %s failed", relay.name)
            self._close(relay)
            return
        if moved:
            relay.last_active = time.monotonic()
        if relay.finished():
            self._close(relay)
        else:
            self._update(relay)

    def _update(self, relay: Relay) -> None:
        """Register each socket of ``relay`` for exactly what its directions wait for."""
        for sock in (relay.client, relay.upstream):
            mask = relay.interest(sock)
            if mask == self._masks.get(sock, 0):
                continue
            if not mask:
                self._selector.unregister(sock)
                del self._masks[sock]
            elif sock in self._masks:
                self._selector.modify(sock, mask, relay)
                self._masks[sock] = mask
            else:
                self._selector.register(sock, mask, relay)
                self._masks[sock] = mask

    def _close_idle(self) -> None:
        limit = time.monotonic() - self.idle_timeout
        idle = [r for r in self._relays if r.last_active < limit]
        for relay in idle:
            self.notes.warning(
                "idle",
                "scheduler proxy: closed a connection to %s idle for %g s (idle_timeout)",
                relay.name,
                self.idle_timeout,
            )
            self._close(relay)

    def _close(self, relay: Relay) -> None:
        if relay.closed:
            return
        relay.closed = True
        for sock in (relay.client, relay.upstream):
            if self._masks.pop(sock, 0):
                self._selector.unregister(sock)
            sock.close()
        for direction in relay.directions:
            direction.close()
        self._relays.discard(relay)
        relay.on_done(relay)


class RelayPool:
    """``threads`` relay threads; a new connection goes to the least busy one."""

    def __init__(self, threads: int, idle_timeout: float, notes: RateLimitedLog) -> None:
        self._threads = [_RelayThread(i, idle_timeout, notes) for i in range(threads)]
        self._lock = threading.Lock()
        self._active = 0

    @property
    def active(self) -> int:
        """Connections being relayed right now."""
        return self._active

    @property
    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def add(
        self,
        name: str,
        client: socket.socket,
        upstream: socket.socket,
        on_done: Callable[[], None],
    ) -> None:
        """Relay ``client`` to ``upstream`` until either side ends, then close both and
        call ``on_done()`` (in the relay thread)."""
        for sock in (client, upstream):
            sock.setblocking(False)
        with self._lock:
            thread = min(self._threads, key=lambda t: t.load)
            thread.load += 1
            self._active += 1

        def done(relay: Relay) -> None:
            with self._lock:
                thread.load -= 1
                self._active -= 1
            on_done()

        try:
            relay = Relay(name, client, upstream, done)
        except BaseException:
            with self._lock:
                thread.load -= 1
                self._active -= 1
            raise
        thread.add(relay)

    def stop(self) -> None:
        """Close every relayed connection and end the threads (blocking)."""
        for thread in self._threads:
            thread.stop()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=30)
