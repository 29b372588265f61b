"""The scheduler agent: a ``SchedulerPlugin`` that keeps the service informed.

It holds one websocket to the service's agent endpoint (``docs/internals.md``, "The
scheduler agent") and pushes what the service needs as it happens: a ``hello`` with the
addresses and the full worker list on every (re)connect, ``worker_added`` and
``worker_removed`` as workers come and go, ``activity`` when the adaptive target, the
amount of work or the idle time changes (at most once a second). The service sends
``retire_workers`` and ``close``.

Nothing here may crash or stall the scheduler: hooks only record and queue, the network
runs in a background task, and every failure is logged and retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from distributed import SchedulerPlugin
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

logger = logging.getLogger("hubgate.scheduler_agent")

__all__ = ["SchedulerAgent", "versions"]

MIN_BACKOFF = 0.1
MAX_BACKOFF = 5.0
ACTIVITY_PERIOD = 1.0  # seconds between two ``activity`` messages, at least
CONNECT_TIMEOUT = 10.0
# A ping notices a silently dead connection to the service (a restart closes it
# outright). The service answers every agent's pings: with 1,000 clusters pings every
# 10 s were a third of an idle service's CPU.
PING_INTERVAL = 30.0


def versions() -> dict[str, str]:
    """The versions a client must match to talk to this scheduler."""
    import cloudpickle
    import dask
    import distributed
    import msgpack

    from .._version import __version__

    return {
        "python": platform.python_version(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "cloudpickle": cloudpickle.__version__,
        "msgpack": ".".join(str(part) for part in msgpack.version),
        "hubgate": __version__,
    }


def agent_url(url: str, cluster_name: str) -> str:
    """``url`` with ``cluster=<name>`` added to its query."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"cluster": cluster_name})) if q)
    return urlunsplit(parts._replace(query=query))


class SchedulerAgent(SchedulerPlugin):
    """Reports a scheduler's state to the hubgate service and carries out its orders."""

    name = "hubgate-agent"
    idempotent = True

    def __init__(
        self,
        cluster_name: str,
        url: str,
        token: str,
        advertise_host: str | None = None,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        ca_file: str | None = None,
    ) -> None:
        self.cluster_name = cluster_name
        self.url = agent_url(url, cluster_name)
        self._token = token
        # wss:// certificates are always verified: against this bundle, else the system's
        self.ca_file = ca_file
        self.advertise_host = advertise_host
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.scheduler: Any = None
        self._conn: WebSocketClientConnection | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        # Worker address -> name: remove_worker runs after the scheduler forgot it.
        self._names: dict[str, str] = {}
        # Names the service asked to retire: their removal is expected.
        self._retiring: set[str] = set()
        self._activity_dirty = asyncio.Event()
        self._last_activity: dict[str, Any] | None = None
        self._idle_since: float | None = time.time()

    def __repr__(self) -> str:
        return f"<SchedulerAgent {self.cluster_name} -> {self.url}>"

    # -- scheduler hooks (cheap, never raise) ----------------------------------------

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        for address, ws in scheduler.workers.items():
            self._names[address] = str(ws.name)
        self._spawn(self._connect_loop())
        self._spawn(self._activity_loop())

    async def before_close(self) -> None:
        self._closing = True

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def add_worker(self, scheduler: Any, worker: str) -> None:
        try:
            ws = scheduler.workers[worker]
            self._names[worker] = str(ws.name)
            self._send({"type": "worker_added", **self._worker_info(ws)})
            self._activity_dirty.set()
        except Exception:
            logger.exception("hubgate agent: cannot report added worker %s", worker)

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        try:
            name = self._names.pop(worker, worker)
            expected = self._closing or name in self._retiring
            self._retiring.discard(name)
            self._send({"type": "worker_removed", "name": name, "expected": expected})
            self._activity_dirty.set()
        except Exception:
            logger.exception("hubgate agent: cannot report removed worker %s", worker)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        # Called for every task transition: only flag, the activity loop does the work.
        self._activity_dirty.set()

    def update_graph(self, scheduler: Any, **kwargs: Any) -> None:
        self._activity_dirty.set()

    # -- state ------------------------------------------------------------------------

    def _worker_info(self, ws: Any) -> dict[str, Any]:
        return {
            "name": str(ws.name),
            "address": ws.address,
            "nthreads": ws.nthreads,
            "memory_limit": ws.memory_limit,
        }

    def scheduler_address(self) -> str:
        # The advertised host when the runtime gave one (bound to 0.0.0.0); distributed
        # keeps a scheduler's contact_address but reports the bound one as .address.
        address = self.scheduler.address
        if not self.advertise_host:
            return address
        scheme, _, hostport = address.rpartition("://")
        port = hostport.rpartition(":")[2]
        return f"{scheme or 'tls'}://{self.advertise_host}:{port}"

    def dashboard_address(self) -> str | None:
        server = self.scheduler.services.get("dashboard")
        if server is None:
            return None
        host = self.advertise_host or self.scheduler.ip
        return f"http://{host}:{server.port}"

    def hello(self) -> dict[str, Any]:
        # The service routes to the host its backend knows and takes only the ports
        # from here; the addresses are informational (logs, older services).
        server = self.scheduler.services.get("dashboard")
        return {
            "type": "hello",
            "cluster": self.cluster_name,
            "scheduler_address": self.scheduler_address(),
            "dashboard_address": self.dashboard_address(),
            "scheduler_port": int(self.scheduler.address.rpartition(":")[2]),
            "dashboard_port": server.port if server is not None else None,
            "workers": [self._worker_info(ws) for ws in self.scheduler.workers.values()],
            "versions": versions(),
        }

    def activity(self) -> dict[str, Any]:
        scheduler = self.scheduler
        processing = sum(len(ws.processing) for ws in scheduler.workers.values())
        processing += len(scheduler.queued) + len(scheduler.unrunnable)
        if processing:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = time.time()
        return {
            "type": "activity",
            "adaptive_target": scheduler.adaptive_target(),
            "processing": processing,
            "idle_since": self._idle_since,
        }

    # -- orders from the service -------------------------------------------------------

    async def retire_workers(self, names: list[str]) -> None:
        names = [str(n) for n in names]
        self._retiring.update(names)
        try:
            await self.scheduler.retire_workers(names=names, close_workers=True, remove=True)
        except Exception:
            logger.exception("hubgate agent: retiring %s failed", names)

    async def close_scheduler(self) -> None:
        self._closing = True
        await self.scheduler.close(reason="hubgate-close")

    def _handle(self, text: str | bytes) -> None:
        try:
            msg = json.loads(text)
            op = msg.get("op")
        except (ValueError, AttributeError):
            logger.warning("hubgate agent: ignoring a message that is not a JSON object")
            return
        if op == "retire_workers" and isinstance(msg.get("names"), list):
            self._spawn(self.retire_workers(msg["names"]))
        elif op == "close":
            # Not a child of our tasks: closing the scheduler cancels them.
            task = asyncio.ensure_future(self.close_scheduler())
            task.add_done_callback(_log_failure)
        else:
            logger.warning("hubgate agent: ignoring unknown message %r", op)

    # -- network ------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    def _send(self, msg: dict[str, Any]) -> None:
        """Send ``msg`` if connected. Dropped otherwise: ``hello`` resynchronises."""
        conn = self._conn
        if conn is None:
            return
        try:
            future = conn.write_message(json.dumps(msg))
            future.add_done_callback(_ignore_closed)
        except WebSocketClosedError:
            pass

    async def _connect_loop(self) -> None:
        backoff = self.min_backoff
        while not self._closing:
            try:
                conn = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.info("hubgate agent: cannot reach %s (%s), retrying", self.url, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.min_backoff
            logger.info("hubgate agent: connected to %s", self.url)
            try:
                self._conn = conn
                self._send(self.hello())
                self._last_activity = None
                self._activity_dirty.set()
                while True:
                    text = await conn.read_message()
                    if text is None:
                        break
                    self._handle(text)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("hubgate agent: connection to %s failed", self.url)
            finally:
                self._conn = None
                conn.close()
            if not self._closing:
                logger.info("hubgate agent: disconnected from %s, reconnecting", self.url)
                await asyncio.sleep(self.min_backoff)

    async def _connect(self) -> WebSocketClientConnection:
        request = HTTPRequest(
            self.url,
            headers={"Authorization": f"token {self._token}"},
            connect_timeout=CONNECT_TIMEOUT,
            request_timeout=CONNECT_TIMEOUT,
            # the token goes to whoever answers: never skip the certificate check
            validate_cert=True,
            ca_certs=self.ca_file,
        )
        return await websocket_connect(request, ping_interval=PING_INTERVAL)

    async def _activity_loop(self) -> None:
        while not self._closing:
            await self._activity_dirty.wait()
            self._activity_dirty.clear()
            try:
                if self._conn is not None:
                    msg = self.activity()
                    if msg != self._last_activity:
                        self._last_activity = msg
                        self._send(msg)
            except Exception:
                logger.exception("hubgate agent: cannot compute activity")
            await asyncio.sleep(ACTIVITY_PERIOD)


def _ignore_closed(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        exc = future.exception()
        if exc is not None and not isinstance(exc, WebSocketClosedError):
            logger.warning("hubgate agent: sending failed: %s", exc)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("hubgate agent: task failed", exc_info=task.exception())
