"""The service's picture of its clusters, and how it is shown on the wire."""

from __future__ import annotations

import asyncio
import datetime
import enum
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..cluster_names import DISPLAY_NAME_OPTION
from .cluster_config import ClusterConfig
from .tls import ClusterCredentials


class ClusterStatus(enum.StrEnum):
    """The public status, as dask-gateway names it."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"

    @property
    def active(self) -> bool:
        return self in (ClusterStatus.PENDING, ClusterStatus.RUNNING)

    @property
    def final(self) -> bool:
        return self in (ClusterStatus.STOPPED, ClusterStatus.FAILED)

    @classmethod
    def parse(cls, text: str) -> ClusterStatus:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"{text!r} is not a valid cluster status; use one of "
                + ", ".join(s.value.lower() for s in cls)
            ) from None


class WorkerStatus(enum.StrEnum):
    STARTING = "starting"  # launched, not yet connected to the scheduler
    RUNNING = "running"  # connected
    STOPPING = "stopping"  # retiring or being stopped
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def live(self) -> bool:
        return self in (WorkerStatus.STARTING, WorkerStatus.RUNNING)


@dataclass
class User:
    """A hub user as the service sees it."""

    name: str
    admin: bool = False
    groups: tuple[str, ...] = ()
    # the user's single-user server whose own token made the request ("" the default
    # server), None for any other token (see auth.token_server)
    server: str | None = None

    def may_manage(self, cluster: Cluster) -> bool:
        return self.admin or cluster.username == self.name


_UNSET = object()
# The worker fields the database keeps (its row); see Worker.unsaved.
WORKER_ROW_FIELDS = frozenset({"status", "state", "created", "stopped", "reason"})


@dataclass
class Worker:
    """One worker of a cluster. Assigning a new value to one of ``WORKER_ROW_FIELDS``
    sets ``unsaved``, so the next save writes this worker's row and no other's (replace
    ``state``, never change it in place)."""

    name: str
    status: WorkerStatus = WorkerStatus.STARTING
    state: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    stopped: float | None = None
    reason: str = ""
    address: str = ""
    nthreads: int = 0
    memory_limit: int = 0
    # set once the service asked the scheduler to retire it (an expected departure)
    retiring: bool = False
    # its row in the database is older than this object (a new worker has none yet)
    unsaved: bool = field(default=True, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in WORKER_ROW_FIELDS and self.__dict__.get(name, _UNSET) != value:
            object.__setattr__(self, "unsaved", True)
        object.__setattr__(self, name, value)

    @property
    def finished(self) -> bool:
        return self.status in (WorkerStatus.STOPPED, WorkerStatus.FAILED)


@dataclass
class Adaptive:
    active: bool = False
    minimum: int = 0
    maximum: int = 0
    recent_targets: deque[int] = field(default_factory=lambda: deque(maxlen=3))


@dataclass
class Cluster:
    name: str
    username: str
    options: dict[str, Any]
    config: ClusterConfig
    token: str
    credentials: ClusterCredentials
    # What people call it (hubgate/cluster_names.py); unique among its owner's
    # unfinished clusters. ``name`` stays the id.
    display_name: str = ""
    # Shown by the service's dashboard proxy to the scheduler's dashboard, which refuses
    # requests without it (empty: a cluster started before the dashboard checked it).
    dashboard_secret: str = ""
    status: ClusterStatus = ClusterStatus.PENDING
    reason: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    stopped: float | None = None
    scheduler_state: dict[str, Any] = field(default_factory=dict)
    scheduler_address: str = ""
    dashboard_address: str = ""
    requested_workers: int = 0
    adaptive: Adaptive = field(default_factory=Adaptive)
    workers: dict[str, Worker] = field(default_factory=dict)
    lease_expires: float | None = None
    idle_since: float | None = None
    last_request: float = field(default_factory=time.time)
    versions: dict[str, Any] = field(default_factory=dict)
    events: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=50))
    worker_failures: int = 0
    worker_counter: int = 0
    # the owner's single-user server whose token created it ("" the default server),
    # None when another token did: server_watch.py stops it when that server stops
    server: str | None = None
    # not persisted
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    # workers forgotten since the last save, whose rows the next save deletes
    forgotten_workers: set[str] = field(default_factory=set, repr=False)
    # with and without credentials: (what it shows, its v1 JSON text); see v1_json_text
    v1_text: dict[bool, tuple[tuple[Any, ...], str]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def add_event(self, message: str) -> None:
        self.events.append((time.time(), message))

    def forget_finished_workers(self, keep: int) -> None:
        """Forget all but the ``keep`` most recently finished (stopped or failed)
        workers: nothing needs the others, and a long-lived adaptive cluster would
        otherwise pile up thousands. Their names are never reused (worker_counter)."""
        finished = [w for w in self.workers.values() if w.finished]
        if len(finished) <= keep:
            return
        finished.sort(key=lambda w: (w.stopped or 0.0, w.created))
        for worker in finished[: len(finished) - keep]:
            del self.workers[worker.name]
            self.forgotten_workers.add(worker.name)

    def notify(self) -> None:
        """Wake up everyone waiting for a change of this cluster."""
        self.changed.set()
        self.changed = asyncio.Event()

    def live_workers(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.status.live]

    def running_workers(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.status is WorkerStatus.RUNNING]

    def dashboard_route(self) -> str | None:
        if self.status is ClusterStatus.RUNNING and self.dashboard_address:
            return f"/clusters/{self.name}/status"
        return None


def _ms(t: float | None) -> int | None:
    return None if t is None else int(t * 1000)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()


def to_v1_json(cluster: Cluster, *, credentials: bool = True) -> dict[str, Any]:
    """The cluster exactly as dask-gateway's client expects it: these 8 keys, no more.
    The display name rides in ``options`` under ``DISPLAY_NAME_OPTION``, a key no
    option set may define.

    ``credentials=False`` (lists, and anyone but the owner, admins included) leaves out
    the client certificate and key: they are the power to run code as the owner."""
    running = cluster.status is ClusterStatus.RUNNING and credentials
    return {
        "name": cluster.name,
        "dashboard_route": cluster.dashboard_route(),
        "status": cluster.status.value,
        "start_time": _ms(cluster.created),
        "stop_time": _ms(cluster.stopped),
        "options": {**cluster.options, DISPLAY_NAME_OPTION: cluster.display_name},
        "tls_cert": cluster.credentials.client_tls_cert() if running else None,
        "tls_key": cluster.credentials.client_tls_key() if running else None,
    }


def v1_json_text(cluster: Cluster, *, credentials: bool = True) -> str:
    """:func:`to_v1_json` as JSON text, made again only when something it shows has
    changed: ``list_clusters`` is the call clients repeat most. Kept with and without
    credentials, so that a list and a connect in turn do not make each other's text
    again. Options, credentials and the id are fixed at creation; the key holds
    everything else ``to_v1_json`` reads."""
    key = (
        cluster.status,
        cluster.stopped,
        cluster.dashboard_address,
        cluster.display_name,
    )
    cached = cluster.v1_text.get(credentials)
    if cached is not None and cached[0] == key:
        return cached[1]
    text = json.dumps(to_v1_json(cluster, credentials=credentials))
    cluster.v1_text[credentials] = (key, text)
    return text


def to_rich_json(
    cluster: Cluster,
    *,
    service_prefix: str,
    proxy_address: str | None,
    direct_address: str | None = None,
) -> dict[str, Any]:
    """hubgate's own, richer view of a cluster (see docs/internals.md).
    ``direct_address``: the scheduler's, for its owner only (``direct_address.py``)."""
    live = cluster.live_workers()
    running = cluster.running_workers()
    route = cluster.dashboard_route()
    return {
        "name": cluster.name,
        "display_name": cluster.display_name,
        "owner": cluster.username,
        "status": cluster.status.value,
        "reason": cluster.reason,
        "options": cluster.options,
        "created": _iso(cluster.created),
        "started": _iso(cluster.started),
        "stopped": _iso(cluster.stopped),
        "workers": {
            "requested": cluster.requested_workers,
            "running": len(running),
            "pending": len(live) - len(running),
        },
        "adaptive": {
            "active": cluster.adaptive.active,
            "minimum": cluster.adaptive.minimum,
            "maximum": cluster.adaptive.maximum,
        },
        "threads": sum(w.nthreads for w in running),
        "memory": sum(w.memory_limit for w in running),
        "cores": cluster.config.worker_cores * len(live),
        "dashboard_url": (service_prefix.rstrip("/") + route) if route else None,
        "scheduler_address": (
            f"{proxy_address}/{cluster.name}"
            if proxy_address and cluster.status is ClusterStatus.RUNNING
            else None
        ),
        "direct_scheduler_address": direct_address,
        "idle_since": _iso(cluster.idle_since),
        "lease_expires": _iso(cluster.lease_expires),
        "events": [{"time": _iso(t), "message": m} for t, m in list(cluster.events)[-20:]],
    }
