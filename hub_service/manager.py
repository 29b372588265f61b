"""The cluster manager: the one place that decides what should run, and makes it so.

API handlers record intent (create, scale, adapt, stop); the scheduler agents report
what happens (ready, worker joined/left, activity); one reconciler per cluster compares
the two and calls the backend. A single loop polls the backend for all processes at
once (one call, however many clusters) to notice deaths the agents cannot report.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..runtime.cluster_process import AGENT_CA_FILE
from ..runtime.dashboard_guard import DASHBOARD_SECRET_FILE, dashboard_prefix
from ..spawners.accounts import AccountRefused
from ..spawners.base import Backend, BackendError, Phase, ProcessSpec, ProcessStatus
from .cluster_config import ClusterConfig
from .culling import adaptive_workers, idle_stop_reason, lease_stop_reason
from .errors import (
    Conflict,
    Forbidden,
    Invalid,
    LimitExceeded,
    NotFound,
    ServiceError,
    report_unexpected,
)
from .limits import (
    Ceiling,
    UserLimits,
    check_new_cluster,
    cluster_ceiling,
    tightest,
    usage_of,
    user_ceiling,
)
from .model import Cluster, ClusterStatus, User, Worker, WorkerStatus
from .name_picker import pick_display_name
from .routes import RefusedAddress, host_port, reported_host, reported_ports
from .server_watch import describe_server
from .store import ClusterStore
from .tls import agenerate_cluster_credentials

log = logging.getLogger("hubgate.manager")

# Seconds the backend may take to say where a scheduler that said hello runs.
ROUTE_HOST_TIMEOUT = 30.0


class AgentConnection(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class RouteTable(Protocol):
    def set_route(self, name: str, target: str) -> None: ...

    def remove_route(self, name: str) -> None: ...


@dataclass
class ManagerSettings:
    service_prefix: str  # "/services/dask-gateway/"
    agent_url: str  # ws://.../api/agent/ws
    python: str = sys.executable
    # PEM CA bundle that schedulers trust for a wss:// agent_url (empty: the system's)
    agent_ca: bytes = b""
    cluster_start_timeout: float = 60.0
    worker_start_timeout: float = 60.0
    worker_start_failure_limit: int = 3
    poll_interval: float = 1.0
    adaptive_max_workers: int = 100
    # hard ceilings that hold even when no limits are configured
    max_workers_per_cluster: int = 1000
    max_clusters_per_user: int = 100
    # seconds a lower adaptive target must hold before workers are retired
    adaptive_scale_down_delay: float = 5.0
    stopped_cluster_retention: float = 24 * 3600.0
    # stopped or failed workers a cluster keeps on record (the most recent ones)
    finished_workers_kept: int = 20
    log_lines: int = 30
    limits_for: Callable[[User], UserLimits] = field(default=lambda user: UserLimits())


def _status_text(status: ProcessStatus) -> str:
    return status.reason or "exited"


class ClusterManager:
    def __init__(
        self,
        *,
        backend: Backend,
        store: ClusterStore,
        routes: RouteTable,
        settings: ManagerSettings,
    ):
        self.backend = backend
        self.store = store
        self.routes = routes
        self.settings = settings
        self.clusters: dict[str, Cluster] = {}
        # The same clusters by owner: what a user's limits and names are checked
        # against, without looking at every other user's clusters.
        self._of_user: dict[str, dict[str, Cluster]] = {}
        # "host:port" -> the clusters that were given it as their scheduler or
        # dashboard route: a superset of who holds it now (_check_routes_free checks).
        self._route_holders: dict[str, set[str]] = {}
        self.agents: dict[str, AgentConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._dirty: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._poll_now = asyncio.Event()
        self._closing = False
        self._user_cache: dict[str, User] = {}
        # adaptive scaling: the scheduler's latest target, and since when it is lower
        self._adaptive_target: dict[str, int] = {}
        self._adaptive_low_since: dict[str, float | None] = {}
        # the worker count the reconciler last held a cluster at, below its request
        self._held_at: dict[tuple[str, str], int] = {}

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Load clusters from the database and take over the ones still running."""
        for cluster in await self.store.load_all():
            self._add(cluster)
            # Workers piled up by an older release (it kept every one) go now.
            cluster.forget_finished_workers(self.settings.finished_workers_kept)
            if cluster.forgotten_workers:
                self._spawn(self.store.save(cluster))
            if cluster.status is ClusterStatus.FAILED and cluster.stopped is None:
                self._spawn(self._finish_stop(cluster, failed=True))  # interrupted
                continue
            if cluster.status.final:
                continue
            self._claim_routes(cluster)
            if cluster.scheduler_address and cluster.status is ClusterStatus.RUNNING:
                self.routes.set_route(cluster.name, _host_port(cluster.scheduler_address))
            if cluster.status is ClusterStatus.STOPPING:
                self._spawn(self._finish_stop(cluster))
        # The first poll says which of them survived while the service was down.
        await self._poll_once()
        for cluster in self.clusters.values():
            if cluster.status.active:
                self._kick(cluster)
        self._loop_task = asyncio.create_task(self._background_loop())

    async def close(self) -> None:
        self._closing = True
        if self._loop_task:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in list(self.agents.values()):
            conn.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Background task failed", exc_info=task.exception())

    def _add(self, cluster: Cluster) -> None:
        self.clusters[cluster.name] = cluster
        self._of_user.setdefault(cluster.username, {})[cluster.name] = cluster

    def _forget(self, name: str) -> None:
        cluster = self.clusters.pop(name)
        mine = self._of_user.get(cluster.username, {})
        mine.pop(name, None)
        if not mine:
            self._of_user.pop(cluster.username, None)

    def _clusters_of(self, username: str) -> list[Cluster]:
        return list(self._of_user.get(username, {}).values())

    def _persist(self, cluster: Cluster) -> None:
        """Wake up the cluster's watchers and save what changed. Forgets finished
        workers beyond the ones kept: never call it while iterating cluster.workers."""
        cluster.notify()
        cluster.forget_finished_workers(self.settings.finished_workers_kept)
        self._spawn(self.store.save(cluster))

    # --- queries --------------------------------------------------------------------

    def visible_clusters(
        self, user: User, statuses: set[ClusterStatus] | None, all_users: bool = False
    ) -> list[Cluster]:
        if all_users and not user.admin:
            raise Forbidden(
                f"Only admins may list all users' clusters; {user.name} is not an admin"
            )
        wanted = statuses or {ClusterStatus.PENDING, ClusterStatus.RUNNING}
        candidates = self.clusters.values() if all_users else self._clusters_of(user.name)
        return sorted((c for c in candidates if c.status in wanted), key=lambda c: c.created)

    def get_cluster(self, user: User, name: str, action: str = "view") -> Cluster:
        cluster = self.clusters.get(name)
        if cluster is None:
            raise NotFound(f"Cluster {name} not found")
        if not user.may_manage(cluster):
            raise Forbidden(f"User {user.name} lacks permissions to {action} cluster {name}")
        return cluster

    async def wait_for_change(self, cluster: Cluster, timeout: float) -> None:
        try:
            await asyncio.wait_for(cluster.changed.wait(), timeout)
        except TimeoutError:
            pass

    # --- create ---------------------------------------------------------------------

    async def create_cluster(
        self,
        user: User,
        options: dict[str, Any],
        config: ClusterConfig,
        display_name: str | None = None,
    ) -> Cluster:
        """``display_name``: a valid one (hubgate/cluster_names.py) or None for a
        generated one; a name the user's unfinished clusters use is a ``Conflict``."""
        self._check_user_limits(user, config)
        self._display_name_for(user, display_name)
        try:
            # A user without an account of their own gets a 403 now, not a failed cluster.
            await self.backend.check_user(user.name)
        except AccountRefused as exc:
            raise Forbidden(str(exc)) from exc
        name = uuid.uuid4().hex
        credentials = await agenerate_cluster_credentials(name)
        # Again, with no await before the insert: concurrent creates may have raced us.
        self._check_user_limits(user, config)
        display_name = self._display_name_for(user, display_name)
        cluster = Cluster(
            name=name,
            display_name=display_name,
            username=user.name,
            options=options,
            config=config,
            token=secrets.token_urlsafe(32),
            credentials=credentials,
            dashboard_secret=secrets.token_urlsafe(32),
            server=user.server,
        )
        made_in = "" if user.server is None else f" from {describe_server(user.name, user.server)}"
        cluster.add_event(f"created by {user.name}{made_in}")
        self._add(cluster)
        self._persist(cluster)
        self._spawn(self._start_scheduler(cluster))
        return cluster

    def _display_name_for(self, user: User, requested: str | None) -> str:
        """``requested`` if none of the user's unfinished clusters has that name, else
        a ``Conflict``; a fresh default name when None. Other users' names never count."""
        mine = {c.display_name: c for c in self._clusters_of(user.name) if not c.status.final}
        if requested is None:
            return pick_display_name(mine)
        clash = mine.get(requested)
        if clash is not None:
            raise Conflict(
                f"You already have a cluster named {requested!r} ({clash.name}, "
                f"{clash.status.value}): choose another name, or stop that cluster first"
            )
        return requested

    def _limits(self, user: User) -> UserLimits:
        return self.settings.limits_for(user).capped(self.settings.max_clusters_per_user)

    def _check_user_limits(self, user: User, config: ClusterConfig) -> None:
        problem = check_new_cluster(
            self._limits(user), usage_of(self._clusters_of(user.name)), config
        )
        if problem:
            raise LimitExceeded(problem)

    def _base_env(self, cluster: Cluster) -> dict[str, str]:
        env = dict(cluster.config.environment)
        env.update(
            HUBGATE_CLUSTER_NAME=cluster.name,
            HUBGATE_LISTEN_HOST=self.backend.listen_host,
        )
        return env

    def _resources(self, cluster: Cluster) -> dict[str, Any]:
        res = dict(cluster.config.resources)
        if cluster.config.python:
            res["python"] = cluster.config.python
        if cluster.config.image:
            res["image"] = cluster.config.image
        return res

    async def _start_scheduler(self, cluster: Cluster) -> None:
        env = self._base_env(cluster)
        env.update(
            HUBGATE_AGENT_URL=self.settings.agent_url,
            # The path is the same on the dashboard origin (dashboard_app.py).
            HUBGATE_DASHBOARD_PREFIX=dashboard_prefix(cluster.name),
        )
        files = cluster.credentials.credentials_files("scheduler")
        files["token"] = cluster.token.encode()
        files[DASHBOARD_SECRET_FILE] = cluster.dashboard_secret.encode()
        if self.settings.agent_ca:
            files[AGENT_CA_FILE] = self.settings.agent_ca
        spec = ProcessSpec(
            cluster_name=cluster.name,
            role="scheduler",
            name="scheduler",
            username=cluster.username,
            argv=[self.settings.python, "-m", "hubgate.runtime.cluster_process", "scheduler"],
            env=env,
            files=files,
            cores=cluster.config.scheduler_cores,
            memory=cluster.config.scheduler_memory,
            setup=cluster.config.scheduler_setup,
            resources=self._resources(cluster),
        )
        try:
            state = await asyncio.wait_for(
                self.backend.start(spec), self.settings.cluster_start_timeout
            )
        except BackendError as exc:
            await self.stop_cluster(cluster, f"The scheduler could not be started: {exc}", True)
            return
        except TimeoutError:
            await self.stop_cluster(
                cluster,
                f"The backend did not start the scheduler within "
                f"{self.settings.cluster_start_timeout:g} s",
                failed=True,
            )
            return
        except Exception as exc:
            text = report_unexpected(exc, f"starting the scheduler of cluster {cluster.name}")
            await self.stop_cluster(cluster, f"The scheduler could not be started: {text}", True)
            return
        if cluster.status is not ClusterStatus.PENDING:
            # stopped while we were starting it
            await self._stop_process(state)
            return
        cluster.scheduler_state = state
        cluster.add_event("scheduler submitted to the backend")
        self._persist(cluster)

    # --- scale / adapt ------------------------------------------------------------------

    def _configured_ceiling(self, cluster: Cluster) -> Ceiling | None:
        """The most live workers the cluster may have now under the configured limits:
        its own, and its owner's across all their clusters (what the other clusters,
        this one's scheduler and its retiring workers hold counts against them). The
        owner's usage is added up only when a limit on cores or memory needs it."""
        owner_limits = self._limits(self._owner(cluster))
        across = None
        if owner_limits.max_cores is not None or owner_limits.max_memory is not None:
            others = [c for c in self._clusters_of(cluster.username) if c is not cluster]
            held = usage_of(others + [_without_live_workers(cluster)])
            across = user_ceiling(owner_limits, held, cluster.config)
        return tightest(cluster_ceiling(cluster.config), across)

    def _worker_ceiling(self, cluster: Cluster) -> Ceiling:
        """The configured ceiling, under the service's hard maximum per cluster."""
        hard = self.settings.max_workers_per_cluster
        return tightest(  # type: ignore[return-value]
            self._configured_ceiling(cluster),
            Ceiling(
                hard,
                f"this service's maximum of {hard} workers per cluster (max_workers_per_cluster)",
            ),
        )

    def _check_hard_maximum(self, what: str, count: int) -> None:
        """Counts no cluster may ever reach are refused, not clamped: a request for a
        hundred million workers is a mistake (or an attack), not a wish to clamp."""
        hard = self.settings.max_workers_per_cluster
        if count > hard:
            raise Invalid(
                f"{what} of {count} workers is more than this service allows for one "
                f"cluster ({hard}, its max_workers_per_cluster); ask for at most {hard}"
            )

    def _owner(self, cluster: Cluster) -> User:
        return self._user_cache.get(cluster.username, User(cluster.username))

    def remember_user(self, user: User) -> None:
        self._user_cache[user.name] = user

    def _check_scalable(self, cluster: Cluster) -> None:
        if not cluster.status.active:
            raise Conflict(f"Cluster {cluster.name} is not running (it is {cluster.status.value})")

    async def scale(self, cluster: Cluster, count: Any, by: str) -> tuple[bool, str | None]:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise Invalid(f"Scale expects a non-negative integer, got {count!r}")
        self._check_hard_maximum("A scale request", count)
        self._check_scalable(cluster)
        ok, msg = True, None
        ceiling = self._worker_ceiling(cluster)
        if count > ceiling.workers:
            ok = False
            # dask-gateway's wording first (its users know it), then which limit.
            msg = (
                f"Scale request of {count} workers would exceed resource limit of "
                f"{ceiling.workers} workers. Scaling to {ceiling.workers} instead. "
                f"The limit is {ceiling.why}."
            )
            count = ceiling.workers
        cluster.last_request = time.time()
        cluster.adaptive.active = False
        cluster.requested_workers = count
        cluster.add_event(f"scaled to {count} worker(s) by {by}")
        self._persist(cluster)
        self._kick(cluster)
        return ok, msg

    async def adapt(
        self, cluster: Cluster, minimum: Any, maximum: Any, active: Any, by: str
    ) -> tuple[bool, str | None]:
        for label, value in (("minimum", minimum), ("maximum", maximum)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise Invalid(f"Adapt expects {label} to be a non-negative integer, got {value!r}")
        if not isinstance(active, bool):
            raise Invalid(f"Adapt expects active to be true or false, got {active!r}")
        for label, value in (("An adapt minimum", minimum), ("An adapt maximum", maximum)):
            if value is not None:
                self._check_hard_maximum(label, value)
        self._check_scalable(cluster)
        cluster.last_request = time.time()
        self._adaptive_low_since.pop(cluster.name, None)
        if not active:
            cluster.adaptive.active = False
            cluster.add_event(f"adaptive scaling turned off by {by}")
            self._persist(cluster)
            return True, None
        minimum = minimum or 0
        ceiling = self._worker_ceiling(cluster)
        if maximum is None:
            configured = self._configured_ceiling(cluster)
            maximum = (
                configured.workers if configured is not None else self.settings.adaptive_max_workers
            )
        if minimum > maximum:
            raise Invalid(f"Adapt minimum ({minimum}) must not exceed maximum ({maximum})")
        ok, msg = True, None
        if maximum > ceiling.workers:
            new_max, new_min = ceiling.workers, min(minimum, ceiling.workers)
            ok = False
            msg = (
                f"Adapt with `maximum={maximum}, minimum={minimum}` workers would exceed "
                f"resource limit of {ceiling.workers} workers. Using `maximum={new_max}, "
                f"minimum={new_min}` instead. The limit is {ceiling.why}."
            )
            minimum, maximum = new_min, new_max
        cluster.adaptive.active = True
        cluster.adaptive.minimum = minimum
        cluster.adaptive.maximum = maximum
        cluster.requested_workers = min(max(cluster.requested_workers, minimum), maximum)
        cluster.add_event(f"adaptive scaling between {minimum} and {maximum} by {by}")
        self._persist(cluster)
        self._kick(cluster)
        return ok, msg

    def renew_lease(self, cluster: Cluster, seconds: Any) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise Invalid(f"Lease expects seconds >= 0, got {seconds!r}")
        if seconds > 3600:
            raise Invalid("A lease may last at most 3600 seconds; renew it more often")
        cluster.lease_expires = time.time() + seconds if seconds else None
        self._persist(cluster)

    # --- stop -------------------------------------------------------------------------

    async def stop_cluster(self, cluster: Cluster, reason: str, failed: bool = False) -> None:
        """Stop everything of the cluster; returns when it is all gone."""
        if cluster.status.final or cluster.status is ClusterStatus.STOPPING:
            return
        # A failure is final at once, so that clients waiting for the start see FAILED
        # and its reason now, not STOPPING; ``stopped`` is set once everything is gone.
        cluster.status = ClusterStatus.FAILED if failed else ClusterStatus.STOPPING
        cluster.reason = reason
        cluster.add_event(reason)
        cluster.adaptive.active = False
        self._persist(cluster)
        await self._finish_stop(cluster, failed)

    async def _finish_stop(self, cluster: Cluster, failed: bool = False) -> None:
        self.routes.remove_route(cluster.name)
        self._release_routes(cluster)
        for what in ("adaptive", "requested"):
            self._held_at.pop((cluster.name, what), None)
        conn = self.agents.pop(cluster.name, None)
        if conn is not None:
            conn.close()
        stops = []
        for worker in cluster.workers.values():
            if worker.status in (WorkerStatus.STOPPED, WorkerStatus.FAILED):
                continue
            worker.status = WorkerStatus.STOPPING
            stops.append(self._stop_process(worker.state))
        if cluster.scheduler_state:
            stops.append(self._stop_process(cluster.scheduler_state))
        await asyncio.gather(*stops)
        now = time.time()
        for worker in cluster.workers.values():
            if worker.status is WorkerStatus.STOPPING:
                worker.status = WorkerStatus.STOPPED
                worker.stopped = now
        cluster.status = ClusterStatus.FAILED if failed else ClusterStatus.STOPPED
        cluster.stopped = now
        self._persist(cluster)

    async def _stop_process(self, state: dict[str, Any]) -> None:
        if not state:
            return
        try:
            await self.backend.stop(state)
        except Exception:
            log.exception("Stopping a process failed: %s", state)

    # --- the scheduler agent ------------------------------------------------------------

    def agent_connected(self, cluster: Cluster, conn: AgentConnection) -> None:
        old = self.agents.get(cluster.name)
        if old is not None and old is not conn:
            old.close()
        self.agents[cluster.name] = conn

    def agent_disconnected(self, cluster: Cluster, conn: AgentConnection) -> None:
        if self.agents.get(cluster.name) is conn:
            del self.agents[cluster.name]
            if cluster.status.active and not self._closing:
                # A scheduler that died closes its websocket first: look now.
                self._poll_now.set()

    async def on_agent_message(self, cluster: Cluster, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if not cluster.status.active:
            return
        if kind == "hello":
            await self._on_hello(cluster, msg)
        elif kind == "worker_added":
            self._on_worker_added(cluster, msg)
        elif kind == "worker_removed":
            self._on_worker_removed(cluster, msg)
        elif kind == "activity":
            self._on_activity(cluster, msg)
        else:
            log.warning("Unknown agent message %r from cluster %s", kind, cluster.name)

    async def _on_hello(self, cluster: Cluster, msg: dict[str, Any]) -> None:
        # Routes come from the backend's host and the reported ports only: the
        # scheduler runs the user's code and may claim any address.
        try:
            ports = reported_ports(msg, self.backend.fixed_ports)
            host = await self._route_host(cluster)
            scheduler = host_port(host, ports.scheduler)
            dashboard = host_port(host, ports.dashboard) if ports.dashboard else ""
            self._check_routes_free(cluster, scheduler, dashboard)
        except Exception as exc:
            if cluster.status.active:
                if isinstance(exc, RefusedAddress | BackendError):
                    log.warning("Cluster %s: refusing its scheduler's hello: %s", cluster.name, exc)
                    why = str(exc)
                else:
                    why = report_unexpected(exc, f"routing to the scheduler of {cluster.name}")
                self._spawn(
                    self.stop_cluster(
                        cluster,
                        f"The service cannot route to this cluster's scheduler: {why}",
                        failed=True,
                    )
                )
            return
        if not cluster.status.active:
            return
        claimed = reported_host(msg.get("scheduler_address"))
        if claimed and claimed != host:
            log.info(
                "Cluster %s: its scheduler says it is at %s; using %s, from the backend",
                cluster.name,
                claimed,
                host,
            )
        self._release_routes(cluster)  # an earlier hello's, if they differ
        cluster.scheduler_address = f"tls://{scheduler}"
        cluster.dashboard_address = f"http://{dashboard}" if dashboard else ""
        self._claim_routes(cluster)
        versions = msg.get("versions")
        cluster.versions = versions if isinstance(versions, dict) else {}
        self.routes.set_route(cluster.name, scheduler)
        if cluster.status is ClusterStatus.PENDING:
            cluster.status = ClusterStatus.RUNNING
            cluster.started = time.time()
            cluster.idle_since = cluster.started
            cluster.add_event("scheduler ready")
        connected = {w.get("name"): w for w in msg.get("workers") or []}
        for worker in cluster.workers.values():
            info = connected.get(worker.name)
            if info is not None:
                self._mark_running(worker, info)
            elif worker.status is WorkerStatus.RUNNING:
                # it left while nobody was listening
                worker.status = WorkerStatus.FAILED
                worker.reason = "disconnected from the scheduler"
                worker.stopped = time.time()
                self._spawn(self._stop_process(worker.state))
        self._persist(cluster)
        self._kick(cluster)

    async def _route_host(self, cluster: Cluster) -> str:
        """The backend's host for the cluster's scheduler. A fast scheduler may say
        hello before ``backend.start`` has returned its state: wait for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.cluster_start_timeout
        while not cluster.scheduler_state and cluster.status.active:
            if loop.time() >= deadline:
                raise BackendError("the backend has not recorded where the scheduler runs")
            await self.wait_for_change(cluster, deadline - loop.time())
        if not cluster.status.active:
            raise BackendError("the cluster is stopping")
        try:
            return await asyncio.wait_for(
                self.backend.route_host(cluster.scheduler_state), ROUTE_HOST_TIMEOUT
            )
        except TimeoutError:
            raise BackendError(
                f"the backend did not say within {ROUTE_HOST_TIMEOUT:g} s where the scheduler runs"
            ) from None

    def _check_routes_free(self, cluster: Cluster, scheduler: str, dashboard: str) -> None:
        """Another cluster's scheduler or dashboard is never a route of this one (on a
        shared host, a hostile scheduler could report its neighbour's ports). One
        lookup per address in the routes given out, each holder checked against what
        it holds now, however many clusters run."""
        taken = sorted(
            address
            for address in {scheduler, dashboard} - {""}
            if any(
                name != cluster.name and self._holds_route(name, address)
                for name in self._route_holders.get(address, ())
            )
        )
        if taken:
            raise RefusedAddress(
                f"{', '.join(taken)} belongs to another cluster "
                "(the scheduler reported ports it does not listen on)"
            )

    def _holds_route(self, name: str, address: str) -> bool:
        other = self.clusters.get(name)
        return other is not None and other.status.active and address in _routes_of(other)

    def _claim_routes(self, cluster: Cluster) -> None:
        """Index the cluster's routes. Every address a cluster is given comes through
        here (its hello, or the database at start), so the index never misses one."""
        for address in _routes_of(cluster):
            self._route_holders.setdefault(address, set()).add(cluster.name)

    def _release_routes(self, cluster: Cluster) -> None:
        for address in _routes_of(cluster):
            holders = self._route_holders.get(address)
            if holders is not None:
                holders.discard(cluster.name)
                if not holders:
                    del self._route_holders[address]

    @staticmethod
    def _mark_running(worker: Worker, info: dict[str, Any]) -> None:
        worker.status = WorkerStatus.RUNNING
        worker.address = str(info.get("address") or "")
        worker.nthreads = int(info.get("nthreads") or 0)
        worker.memory_limit = int(info.get("memory_limit") or 0)

    def _on_worker_added(self, cluster: Cluster, msg: dict[str, Any]) -> None:
        worker = cluster.workers.get(str(msg.get("name")))
        if worker is None or not worker.status.live:
            log.info("Cluster %s: ignoring unknown worker %s", cluster.name, msg.get("name"))
            return
        self._mark_running(worker, msg)
        cluster.worker_failures = 0
        self._persist(cluster)

    def _on_worker_removed(self, cluster: Cluster, msg: dict[str, Any]) -> None:
        worker = cluster.workers.get(str(msg.get("name")))
        if worker is None or worker.status in (WorkerStatus.STOPPED, WorkerStatus.FAILED):
            return
        worker.stopped = time.time()
        if worker.retiring or msg.get("expected"):
            worker.status = WorkerStatus.STOPPED
        else:
            worker.status = WorkerStatus.FAILED
            worker.reason = "left the scheduler unexpectedly"
            cluster.add_event(f"worker {worker.name} left unexpectedly; replacing it")
        self._spawn(self._stop_process(worker.state))
        self._persist(cluster)
        self._kick(cluster)

    def _on_activity(self, cluster: Cluster, msg: dict[str, Any]) -> None:
        idle = msg.get("idle_since")
        cluster.idle_since = float(idle) if isinstance(idle, int | float) else None
        target = msg.get("adaptive_target")
        if isinstance(target, int) and not isinstance(target, bool):
            self._adaptive_target[cluster.name] = target
            self._adapt_step(cluster, time.time())

    def _adapt_step(self, cluster: Cluster, now: float) -> None:
        """Move an adaptive cluster towards its scheduler's target (see culling.py)."""
        target = self._adaptive_target.get(cluster.name)
        if not cluster.adaptive.active or target is None:
            self._adaptive_low_since.pop(cluster.name, None)
            return
        wanted, low_since = adaptive_workers(
            cluster,
            target,
            self._adaptive_low_since.get(cluster.name),
            now,
            self.settings.adaptive_scale_down_delay,
        )
        self._adaptive_low_since[cluster.name] = low_since
        if wanted is not None:
            # The scheduler's wish is bounded by what the owner's limits leave now
            # (other clusters of theirs may have grown since adapt() was called).
            ceiling = self._worker_ceiling(cluster)
            self._note_held(cluster, "adaptive", wanted, ceiling)
            wanted = min(wanted, ceiling.workers)
        if wanted is not None and wanted != cluster.requested_workers:
            cluster.requested_workers = wanted
            cluster.add_event(f"adaptive scaling to {wanted} worker(s)")
            self._persist(cluster)
            self._kick(cluster)

    # --- reconciling --------------------------------------------------------------------

    def _kick(self, cluster: Cluster) -> None:
        """Ask for a reconcile of this cluster; several asks coalesce into one."""
        if cluster.name in self._dirty:
            return
        self._dirty.add(cluster.name)
        self._spawn(self._reconcile(cluster))

    async def _reconcile(self, cluster: Cluster) -> None:
        lock = self._locks.setdefault(cluster.name, asyncio.Lock())
        async with lock:
            self._dirty.discard(cluster.name)
            if cluster.status is not ClusterStatus.RUNNING or not cluster.scheduler_address:
                return
            live = [w for w in cluster.live_workers() if not w.retiring]
            if cluster.requested_workers:
                want = self._allowed_workers(cluster)
            else:
                want = 0  # nothing to hold under the limits
                self._held_at.pop((cluster.name, "requested"), None)
            if len(live) < want:
                # Records first, with no await in between: the owner's other clusters
                # reconciling meanwhile must count these workers against the limits.
                new = [self._new_worker(cluster) for _ in range(want - len(live))]
                await asyncio.gather(*(self._launch_worker(cluster, w) for w in new))
            elif len(live) > want:
                # Cheapest first: workers that have not joined yet, then the newest.
                victims = sorted(
                    live, key=lambda w: (w.status is WorkerStatus.RUNNING, -w.created)
                )[: len(live) - want]
                await self._remove_workers(cluster, victims)

    def _allowed_workers(self, cluster: Cluster) -> int:
        """The request, held under the limits as they stand now: here is where worker
        counts are applied, whether they came from scale(), adapt() or the scheduler.
        Not called for a request of 0 (nothing to hold): under a cores or memory limit
        the ceiling adds up the owner's every cluster, and a restart reconciles them all."""
        ceiling = self._worker_ceiling(cluster)
        self._note_held(cluster, "requested", cluster.requested_workers, ceiling)
        return min(cluster.requested_workers, ceiling.workers)

    def _note_held(self, cluster: Cluster, what: str, wished: int, ceiling: Ceiling) -> None:
        """An event when a worker count is first held below what was wished (and when
        the hold changes), not every time it is looked at."""
        key = (cluster.name, what)
        if wished <= ceiling.workers:
            self._held_at.pop(key, None)
            return
        if self._held_at.get(key) != ceiling.workers:
            self._held_at[key] = ceiling.workers
            cluster.add_event(
                f"holding at {ceiling.workers} of {wished} {what} worker(s): "
                f"the limit is {ceiling.why}"
            )
            self._persist(cluster)

    def _new_worker(self, cluster: Cluster) -> Worker:
        cluster.worker_counter += 1
        worker = Worker(name=f"{cluster.name[:8]}-{cluster.worker_counter}")
        cluster.workers[worker.name] = worker
        return worker

    async def _launch_worker(self, cluster: Cluster, worker: Worker) -> None:
        env = self._base_env(cluster)
        env.update(
            HUBGATE_SCHEDULER_ADDRESS=cluster.scheduler_address,
            HUBGATE_WORKER_NAME=worker.name,
            HUBGATE_WORKER_THREADS=str(cluster.config.worker_threads),
            HUBGATE_WORKER_MEMORY=str(cluster.config.worker_memory),
        )
        spec = ProcessSpec(
            cluster_name=cluster.name,
            role="worker",
            name=worker.name,
            username=cluster.username,
            argv=[self.settings.python, "-m", "hubgate.runtime.cluster_process", "worker"],
            env=env,
            files=cluster.credentials.credentials_files("worker"),
            cores=cluster.config.worker_cores,
            memory=cluster.config.worker_memory,
            setup=cluster.config.worker_setup,
            resources=self._resources(cluster),
        )
        try:
            worker.state = await asyncio.wait_for(
                self.backend.start(spec), self.settings.worker_start_timeout
            )
        except BackendError as exc:
            self._worker_failed(cluster, worker, f"could not be started: {exc}")
            return
        except TimeoutError:
            self._worker_failed(
                cluster,
                worker,
                f"was not started by the backend within "
                f"{self.settings.worker_start_timeout:g} s (worker_start_timeout)",
            )
            return
        except Exception as exc:
            text = report_unexpected(exc, f"starting worker {worker.name}")
            self._worker_failed(cluster, worker, f"could not be started: {text}")
            return
        if not cluster.status.active:
            await self._stop_process(worker.state)
            worker.status = WorkerStatus.STOPPED
        self._persist(cluster)

    def _worker_failed(self, cluster: Cluster, worker: Worker, reason: str) -> None:
        worker.status = WorkerStatus.FAILED
        worker.reason = reason
        worker.stopped = time.time()
        cluster.worker_failures += 1
        cluster.add_event(f"worker {worker.name} {reason}")
        if cluster.worker_failures >= self.settings.worker_start_failure_limit:
            self._spawn(
                self.stop_cluster(
                    cluster,
                    f"{cluster.worker_failures} workers in a row failed to start. "
                    f"The last one {reason}",
                    failed=True,
                )
            )
        else:
            self._persist(cluster)
            self._kick(cluster)

    async def _remove_workers(self, cluster: Cluster, victims: list[Worker]) -> None:
        to_retire = []
        for worker in victims:
            worker.retiring = True
            if worker.status is WorkerStatus.RUNNING and cluster.name in self.agents:
                worker.status = WorkerStatus.STOPPING
                to_retire.append(worker.name)
            else:
                worker.status = WorkerStatus.STOPPING
                self._spawn(self._stop_worker_now(cluster, worker))
        if to_retire:
            self.agents[cluster.name].send({"op": "retire_workers", "names": to_retire})
        self._persist(cluster)

    async def _stop_worker_now(self, cluster: Cluster, worker: Worker) -> None:
        await self._stop_process(worker.state)
        worker.status = WorkerStatus.STOPPED
        worker.stopped = time.time()
        self._persist(cluster)

    # --- watching -----------------------------------------------------------------------

    async def _background_loop(self) -> None:
        last_cleanup = 0.0
        while True:
            try:
                await asyncio.wait_for(self._poll_now.wait(), self.settings.poll_interval)
            except TimeoutError:
                pass
            self._poll_now.clear()
            try:
                await self._poll_once()
                await self._check_timers()
                if time.time() - last_cleanup > 600:
                    last_cleanup = time.time()
                    await self.store.delete_older_than(self.settings.stopped_cluster_retention)
                    self._forget_old()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Cluster watch loop failed; continuing")

    def _forget_old(self) -> None:
        cutoff = time.time() - self.settings.stopped_cluster_retention
        for name in [
            n for n, c in self.clusters.items() if c.stopped is not None and c.stopped < cutoff
        ]:
            self._forget(name)

    async def _poll_once(self) -> None:
        targets: list[tuple[Cluster, Worker | None]] = []
        states: list[dict[str, Any]] = []
        for cluster in self.clusters.values():
            if not cluster.status.active:
                continue
            if cluster.scheduler_state:
                targets.append((cluster, None))
                states.append(cluster.scheduler_state)
            for worker in cluster.workers.values():
                if worker.status.live and worker.state:
                    targets.append((cluster, worker))
                    states.append(worker.state)
        if not states:
            return
        try:
            statuses = await self.backend.poll(states)
        except Exception:
            log.exception("Polling the backend failed")
            return
        for (cluster, worker), status in zip(targets, statuses, strict=True):
            if status.phase is not Phase.GONE or not cluster.status.active:
                continue
            if worker is None:
                await self._scheduler_gone(cluster, status)
                continue
            elif worker.status.live:
                await self._worker_gone(cluster, worker, status)

    async def _log_tail(self, state: dict[str, Any]) -> str:
        try:
            text = await self.backend.read_log(state, self.settings.log_lines)
        except Exception:
            log.exception("Reading a log failed")
            return ""
        return (text or "").strip()

    async def _scheduler_gone(self, cluster: Cluster, status: ProcessStatus) -> None:
        tail = await self._log_tail(cluster.scheduler_state)
        what = "died" if cluster.status is ClusterStatus.RUNNING else "failed to start"
        how = _status_text(status)
        reason = f"The scheduler {what}: it {'was ' if how.startswith('killed') else ''}{how}"
        if tail:
            reason += f". Its last log lines:\n{tail}"
        # Not awaited: stopping the workers must not hold up noticing other deaths.
        self._spawn(self.stop_cluster(cluster, reason, failed=True))

    async def _worker_gone(self, cluster: Cluster, worker: Worker, status: ProcessStatus) -> None:
        if worker.retiring:
            worker.status = WorkerStatus.STOPPED
            worker.stopped = time.time()
            self._persist(cluster)
            return
        tail = await self._log_tail(worker.state)
        reason = _status_text(status)
        if tail:
            reason += f"; its last log lines:\n{tail}"
        if worker.status is WorkerStatus.STARTING:
            self._worker_failed(cluster, worker, f"failed to start: {reason}")
        else:
            worker.status = WorkerStatus.FAILED
            worker.reason = reason
            worker.stopped = time.time()
            cluster.add_event(f"worker {worker.name} died ({_status_text(status)}); replacing it")
            self._persist(cluster)
            self._kick(cluster)

    async def _check_timers(self) -> None:
        now = time.time()
        for cluster in list(self.clusters.values()):
            if cluster.status is ClusterStatus.PENDING:
                if now - cluster.created > self.settings.cluster_start_timeout:
                    tail = await self._log_tail(cluster.scheduler_state)
                    reason = (
                        f"The scheduler did not become ready within "
                        f"{self.settings.cluster_start_timeout:g} s (cluster_start_timeout)"
                    )
                    if tail:
                        reason += f". Its last log lines:\n{tail}"
                    self._spawn(self.stop_cluster(cluster, reason, failed=True))
                continue
            if cluster.status is not ClusterStatus.RUNNING:
                continue
            for worker in list(cluster.workers.values()):
                if (
                    worker.status is WorkerStatus.STARTING
                    and worker.state
                    and now - worker.created > self.settings.worker_start_timeout
                ):
                    self._spawn(self._stop_process(worker.state))
                    self._worker_failed(
                        cluster,
                        worker,
                        f"did not connect within {self.settings.worker_start_timeout:g} s",
                    )
            reason = lease_stop_reason(cluster, now) or idle_stop_reason(cluster, now)
            if reason:
                self._spawn(self.stop_cluster(cluster, reason))
                continue
            self._adapt_step(cluster, now)
            if len([w for w in cluster.live_workers() if not w.retiring]) < (
                cluster.requested_workers
            ):
                # Held under the owner's limits: room may have been freed elsewhere.
                self._kick(cluster)

    async def logs(self, cluster: Cluster, lines: int) -> dict[str, Any]:
        scheduler = None
        if cluster.scheduler_state:
            scheduler = await self.backend.read_log(cluster.scheduler_state, lines)
        workers: dict[str, str | None] = {}
        # A copy: workers come and go while the logs are read.
        for worker in list(cluster.workers.values()):
            if worker.state:
                workers[worker.name] = await self.backend.read_log(worker.state, lines)
        return {"scheduler": scheduler, "workers": workers}


def _host_port(address: str) -> str:
    return address.split("://", 1)[-1]


def _routes_of(cluster: Cluster) -> set[str]:
    """The "host:port" of the cluster's scheduler and dashboard as it holds them now."""
    return {
        _host_port(address)
        for address in (cluster.scheduler_address, cluster.dashboard_address)
        if address
    }


def _without_live_workers(cluster: Cluster) -> Cluster:
    """A view of the cluster with its scheduler and retiring workers but none of its
    live ones (for limit arithmetic: how many live workers fit beside what it holds)."""
    view = Cluster(
        name=cluster.name,
        username=cluster.username,
        options=cluster.options,
        config=cluster.config,
        token="",
        credentials=cluster.credentials,
        status=cluster.status,
    )
    view.workers = {n: w for n, w in cluster.workers.items() if w.status is WorkerStatus.STOPPING}
    return view


__all__ = ["ClusterManager", "ManagerSettings", "ServiceError"]
