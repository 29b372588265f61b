"""One refresh loop per watched thing, shared by every view of it.

A cluster shown in three cells, or a cluster widget and a gateway widget of the same
service, make one loop, not one per display: the first view subscribes and starts a task
on the client's own event loop (no thread of its own, requests through the client's
async API); the last view to go stops it. It also stops when what it watches reaches a
final state (a stopped or failed cluster) and when the client it runs on closes; the
views of another, still open, client then carry on with a loop on that client.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .base import logger

# Consecutive failures double the wait between refreshes, up to this many seconds.
MAX_BACKOFF_SECONDS = 60.0


class Viewer(Protocol):
    """What a refresh tells its subscribers (called on the refresh's loop thread)."""

    def refreshed(self, value: Any) -> None: ...

    def refresh_failed(self, exc: Exception) -> None: ...

    def refresh_ended(self, reason: str) -> None: ...


@dataclass(frozen=True, eq=False)
class Source:
    """How to refresh one thing through one client.

    ``key`` names the thing (the same for every client that can fetch it); ``fetch``
    is a coroutine function run on ``loop``; ``final(value)`` says the thing will not
    change again; ``gone(exc)`` that it no longer exists; ``run_in_background`` starts
    the task so that closing the client cancels it; ``closed()`` whether the client
    can no longer be used.
    """

    key: Hashable
    loop: asyncio.AbstractEventLoop
    fetch: Callable[[], Awaitable[Any]]
    run_in_background: Callable[[Awaitable[Any]], asyncio.Future[Any]]
    closed: Callable[[], bool]
    final: Callable[[Any], bool] = lambda value: False
    gone: Callable[[Exception], bool] = lambda exc: False


@dataclass(eq=False)
class Subscription:
    source: Source
    interval: float
    viewer: weakref.ref[Viewer]
    token: int = field(default_factory=itertools.count().__next__)
    finalizer: weakref.finalize | None = None


class Refresh:
    """The loop for one key; see the module's docstring."""

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.subscriptions: dict[int, Subscription] = {}
        self.source: Source | None = None
        self.task: asyncio.Future[Any] | None = None
        self.fetches = 0
        # Set once no loop runs for this key any more (for callers that must wait).
        self.stopped = threading.Event()
        self._due = 0.0  # time.monotonic() of the next fetch
        self._wake: asyncio.Event | None = None

    @property
    def interval(self) -> float:
        return min((s.interval for s in self.subscriptions.values()), default=1.0)

    # -- on the loop ----------------------------------------------------------------
    def _start(self, source: Source) -> None:
        self.source = source
        try:
            source.loop.call_soon_threadsafe(self._create_task, source)
        except RuntimeError:  # the loop is closed: its client is gone
            self._finish(source, "closed")

    def _create_task(self, source: Source) -> None:
        with _lock:
            if _refreshes.get(self.key) is not self or self.source is not source:
                return  # unsubscribed before the loop got here
            self._wake = asyncio.Event()
            self.task = source.run_in_background(self._run(source))

    async def _run(self, source: Source) -> None:
        reason = "closed"
        try:
            failures = 0
            while True:
                if source.closed():  # a client that closes without cancelling us
                    return
                self.fetches += 1
                try:
                    value = await source.fetch()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if source.gone(exc):
                        reason = "gone"
                        return
                    failures += 1
                    logger.debug("Refreshing %s failed", self.key, exc_info=True)
                    self._tell("refresh_failed", exc)
                else:
                    failures = 0
                    self._tell("refreshed", value)
                    if source.final(value):
                        reason = "final"
                        return
                backoff = min(self.interval * 2**failures, MAX_BACKOFF_SECONDS)
                self._due = time.monotonic() + backoff
                await self._sleep_until_due()
        finally:
            self._finish(source, reason)

    async def _sleep_until_due(self) -> None:
        assert self._wake is not None
        while (remaining := self._due - time.monotonic()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                pass

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- from any thread ----------------------------------------------------------------
    def _tell(self, method: str, argument: Any) -> None:
        for subscription in list(self.subscriptions.values()):
            viewer = subscription.viewer()
            if viewer is None:
                unsubscribe(subscription)
                continue
            try:
                getattr(viewer, method)(argument)
            except Exception:
                logger.exception("Showing the refresh of %s failed", self.key)

    def refresh_now(self) -> None:
        self._due = 0.0
        source = self.source
        if source is not None:
            try:
                source.loop.call_soon_threadsafe(self._wake_up)
            except RuntimeError:
                pass

    def offer(self, value: Any) -> None:
        """A fresh value fetched by someone else (a listing): show it and count it as
        this loop's refresh, so that the thing is not fetched twice as often."""
        self._tell("refreshed", value)
        source = self.source
        if source is not None and not source.final(value):
            self._due = max(self._due, time.monotonic() + self.interval)

    def _finish(self, source: Source, reason: str) -> None:
        """The loop through ``source`` ended: tell its views why, or carry on through
        another view's client if the ending was only this client closing."""
        ended: list[Subscription] = []
        with _lock:
            if _refreshes.get(self.key) is not self or self.source is not source:
                self.stopped.set()  # unsubscribed (or handed over) meanwhile
                return
            successor = None
            for token, subscription in list(self.subscriptions.items()):
                other = subscription.source
                if reason == "closed" and other is not source and not other.closed():
                    successor = successor or other
                    continue
                ended.append(self.subscriptions.pop(token))
            self.task = None
            if successor is None:
                _refreshes.pop(self.key, None)
                self.source = None
                self.stopped.set()
            else:
                self._due = 0.0
                self._start(successor)
        for subscription in ended:
            viewer = subscription.viewer()
            if viewer is not None:
                try:
                    viewer.refresh_ended(reason)
                except Exception:
                    logger.exception("Ending the refresh of %s failed", self.key)


_lock = threading.RLock()
_refreshes: dict[Hashable, Refresh] = {}


def subscribe(source: Source, interval: float, viewer: Viewer) -> Subscription:
    """Refresh ``source.key`` at least every ``interval`` seconds for ``viewer``;
    starts the key's loop if it is the first view."""
    subscription = Subscription(source, interval, weakref.ref(viewer))
    with _lock:
        refresh = _refreshes.get(source.key)
        if refresh is None:
            refresh = _refreshes[source.key] = Refresh(source.key)
            refresh.subscriptions[subscription.token] = subscription
            refresh._start(source)
        else:
            refresh.subscriptions[subscription.token] = subscription
            refresh.refresh_now()  # the new view wants a current state at once
    # A view collected without being closed stops counting.
    subscription.finalizer = weakref.finalize(viewer, unsubscribe, subscription)
    return subscription


def unsubscribe(subscription: Subscription) -> None:
    """Stop refreshing for this view; the last view to go stops the loop."""
    if subscription.finalizer is not None:
        subscription.finalizer.detach()
    with _lock:
        refresh = _refreshes.get(subscription.source.key)
        if refresh is None or refresh.subscriptions.pop(subscription.token, None) is None:
            return
        if refresh.subscriptions:
            return
        _refreshes.pop(refresh.key)
        task, source = refresh.task, refresh.source
        refresh.source = None
        if task is None:
            refresh.stopped.set()
            return
    assert source is not None
    try:
        source.loop.call_soon_threadsafe(task.cancel)
    except RuntimeError:  # the loop is already closed, and the task with it
        refresh.stopped.set()


def refresh_now(subscription: Subscription) -> None:
    """Refresh the subscription's key now (after an action such as scale)."""
    refresh = _refreshes.get(subscription.source.key)
    if refresh is not None:
        refresh.refresh_now()


def offer(key: Hashable, value: Any) -> None:
    """Share a value fetched for ``key`` with the key's loop, if one runs."""
    refresh = _refreshes.get(key)
    if refresh is not None:
        refresh.offer(value)


class Subscriber:
    """A widget's membership of the refresh loop of what it shows (``_source``): it
    joins while a view of it is displayed (``_view_count`` above 0) and leaves when the
    last one goes. The widget supplies ``_source``, ``refresh_interval``, the Viewer
    methods, and ``_may_refresh`` for its own reasons not to (closed, final...)."""

    _source: Source | None
    _subscription: Subscription | None = None
    refresh_interval: float | None

    @property
    def refreshing(self) -> bool:
        return self._subscription is not None

    def _may_refresh(self) -> bool:
        return True

    def _views_changed(self, change: dict[str, Any]) -> None:
        if (change["new"] or 0) > 0:
            self.start_refresh()
        else:
            self.stop_refresh()

    def start_refresh(self) -> None:
        """Join the refresh loop (done when a view is displayed)."""
        if self._source is None or self._subscription is not None or not self._may_refresh():
            return
        assert self.refresh_interval is not None
        self._subscription = subscribe(self._source, self.refresh_interval, self)  # type: ignore[arg-type]

    def stop_refresh(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            unsubscribe(subscription)


def running(key: Hashable | None = None) -> list[Refresh]:
    """The loops running now (all, or the one for ``key``)."""
    with _lock:
        if key is None:
            return list(_refreshes.values())
        return [r for k, r in _refreshes.items() if k == key]
