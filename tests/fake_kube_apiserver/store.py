"""The stand-in's object store: what etcd plus the API server's storage layer do.

One monotonic ``resourceVersion`` counter for every write, a bounded history of events
for watches (older ones are "compacted": a watch from before them gets 410 Gone), and
watchers that receive each event of their kind, namespace and label selector.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Conflict", "Event", "Gone", "NotFound", "Store", "Watcher", "now_iso"]

KINDS = {"pods": "Pod", "services": "Service", "secrets": "Secret"}


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class Gone(Exception):
    """The requested resourceVersion is older than the retained history."""


@dataclass(frozen=True)
class Event:
    rv: int
    resource: str
    namespace: str
    type: str  # ADDED, MODIFIED, DELETED
    object: dict[str, Any]


@dataclass(eq=False)
class Watcher:
    resource: str
    namespace: str | None  # None: all namespaces
    matches: Callable[[Mapping[str, str]], bool]
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)

    def wants(self, event: Event) -> bool:
        if event.resource != self.resource:
            return False
        if self.namespace is not None and event.namespace != self.namespace:
            return False
        return self.matches(event.object["metadata"].get("labels") or {})


class Store:
    def __init__(self, history: int = 1000) -> None:
        self.rv = 0
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.history: deque[Event] = deque()
        self.history_size = history
        # Every event with rv <= compacted_through may be missing from the history.
        self.compacted_through = 0
        self.watchers: set[Watcher] = set()
        self.listeners: list[Callable[[Event], None]] = []

    # -- writes ------------------------------------------------------------------

    def _emit(self, resource: str, namespace: str, kind: str, obj: dict[str, Any]) -> Event:
        event = Event(self.rv, resource, namespace, kind, copy.deepcopy(obj))
        self.history.append(event)
        while len(self.history) > self.history_size:
            self.compacted_through = self.history.popleft().rv
        for watcher in list(self.watchers):
            if watcher.wants(event):
                watcher.queue.put_nowait(event)
        for listener in self.listeners:
            listener(event)
        return event

    def create(self, resource: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        key = (resource, namespace, meta["name"])
        if key in self.objects:
            raise Conflict(meta["name"])
        self.rv += 1
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            resourceVersion=str(self.rv),
            creationTimestamp=now_iso(),
        )
        obj["kind"] = KINDS[resource]
        obj["apiVersion"] = "v1"
        self.objects[key] = obj
        self._emit(resource, namespace, "ADDED", obj)
        return copy.deepcopy(obj)

    def update(
        self, resource: str, namespace: str, name: str, mutate: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        obj = self.objects.get((resource, namespace, name))
        if obj is None:
            raise NotFound(name)
        mutate(obj)
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(resource, namespace, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def remove(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects.pop((resource, namespace, name), None)
        if obj is None:
            raise NotFound(name)
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(resource, namespace, "DELETED", obj)
        return copy.deepcopy(obj)

    def compact(self) -> None:
        """Forget all history (as etcd compaction does) and end every watch."""
        self.history.clear()
        self.compacted_through = self.rv
        for watcher in list(self.watchers):
            watcher.queue.put_nowait(None)

    # -- reads -------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((resource, namespace, name))
        if obj is None:
            raise NotFound(name)
        return copy.deepcopy(obj)

    def find(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            obj
            for (r, ns, _), obj in self.objects.items()
            if r == resource and (namespace is None or ns == namespace)
        ]

    def list(
        self,
        resource: str,
        namespace: str | None,
        matches: Callable[[Mapping[str, str]], bool],
    ) -> tuple[list[dict[str, Any]], int]:
        items = [
            copy.deepcopy(obj)
            for obj in self.find(resource, namespace)
            if matches(obj["metadata"].get("labels") or {})
        ]
        items.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
        return items, self.rv

    def watch(
        self,
        resource: str,
        namespace: str | None,
        matches: Callable[[Mapping[str, str]], bool],
        since: int | None,
    ) -> tuple[Watcher, list[Event]]:
        """Register a watcher; return it with the events to replay first.

        ``since=None`` replays the current objects as ADDED events (what the API server
        does for a watch without a resourceVersion).
        """
        watcher = Watcher(resource, namespace, matches)
        if since is None:
            items, rv = self.list(resource, namespace, matches)
            replay = [Event(rv, resource, o["metadata"]["namespace"], "ADDED", o) for o in items]
        else:
            if since < self.compacted_through:
                raise Gone(since)
            replay = [e for e in self.history if e.rv > since and watcher.wants(e)]
        self.watchers.add(watcher)
        return watcher, replay
