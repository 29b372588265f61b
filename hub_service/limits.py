"""Per-user and per-group limits across all of a user's clusters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config_keys import unknown_keys_message
from .cluster_config import GIB, ClusterConfig, ConfigError, parse_memory
from .model import Cluster, User, WorkerStatus

# Workers whose process still holds its cores and memory (a retiring worker does until
# it exits).
_HOLDING = (WorkerStatus.STARTING, WorkerStatus.RUNNING, WorkerStatus.STOPPING)


LIMIT_KEYS = ("max_clusters", "max_cores", "max_memory")


@dataclass(frozen=True)
class UserLimits:
    """How much one user may hold at once, over all their active clusters.
    ``None`` means no limit."""

    max_clusters: int | None = None
    max_cores: float | None = None
    max_memory: int | None = None  # bytes

    @classmethod
    def from_config(cls, data: Any, setting: str = "user_limits") -> UserLimits:
        """Typed limits from an operator's dict; ``ConfigError`` naming ``setting``, the
        bad key or value and the valid keys otherwise."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"{setting} must be a mapping of {', '.join(LIMIT_KEYS)} to values, got {data!r}"
            )
        unknown = [k for k in data if k not in LIMIT_KEYS]
        if unknown:
            raise ConfigError(unknown_keys_message(setting, unknown, LIMIT_KEYS))
        clusters = data.get("max_clusters")
        if clusters is not None and (
            isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 0
        ):
            raise ConfigError(
                f"{setting}: max_clusters must be a whole number >= 0 (or None for no "
                f"limit), got {clusters!r}"
            )
        cores = data.get("max_cores")
        if cores is not None and (
            isinstance(cores, bool) or not isinstance(cores, int | float) or cores < 0
        ):
            raise ConfigError(
                f"{setting}: max_cores must be a number >= 0 (or None for no limit), got {cores!r}"
            )
        mem = data.get("max_memory")
        return cls(
            max_clusters=clusters,
            max_cores=cores,
            max_memory=None if mem is None else parse_memory(mem, f"{setting}: max_memory"),
        )

    def capped(self, max_clusters: int) -> UserLimits:
        """These limits under the service's hard maximum of clusters per user, which
        holds even when no limit is configured."""
        clusters = (
            max_clusters if self.max_clusters is None else min(self.max_clusters, max_clusters)
        )
        return UserLimits(clusters, self.max_cores, self.max_memory)

    def most_generous(self, other: UserLimits) -> UserLimits:
        """Combine the limits of two groups a user belongs to: the larger one wins."""

        def pick(a: Any, b: Any) -> Any:
            if a is None or b is None:
                return None
            return max(a, b)

        return UserLimits(
            pick(self.max_clusters, other.max_clusters),
            pick(self.max_cores, other.max_cores),
            pick(self.max_memory, other.max_memory),
        )


def limits_table(data: Any, setting: str) -> dict[str, UserLimits]:
    """``{name: limits}`` for group_limits and per_user_limits, each entry checked like
    user_limits (its messages name ``setting['name']``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{setting} must be a mapping of names to limits, got {data!r}")
    table = {}
    for name, entry in data.items():
        if not isinstance(name, str):
            raise ConfigError(f"{setting}: every key must be a name (a string), got {name!r}")
        table[name] = UserLimits.from_config(entry, f"{setting}[{name!r}]")
    return table


@dataclass(frozen=True)
class LimitsPolicy:
    """The configured limits, parsed once when the service starts: the default, per
    hub group and per named user."""

    default: UserLimits = UserLimits()
    groups: Mapping[str, UserLimits] = field(default_factory=dict)
    users: Mapping[str, UserLimits] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls,
        user_limits: Any,
        group_limits: Any,
        per_user_limits: Any,
        prefix: str = "HubgateService.",
    ) -> LimitsPolicy:
        return cls(
            default=UserLimits.from_config(user_limits, f"{prefix}user_limits"),
            groups=limits_table(group_limits, f"{prefix}group_limits"),
            users=limits_table(per_user_limits, f"{prefix}per_user_limits"),
        )

    def for_user(self, user: User) -> UserLimits:
        """A user's own limits if configured, else the most generous of their groups',
        else the default."""
        own = self.users.get(user.name)
        if own is not None:
            return own
        result: UserLimits | None = None
        for group in user.groups:
            limits = self.groups.get(group)
            if limits is not None:
                result = limits if result is None else result.most_generous(limits)
        return self.default if result is None else result


@dataclass(frozen=True)
class Usage:
    clusters: int
    cores: float
    memory: int

    def describe(self) -> str:
        return f"{self.clusters} cluster(s), {self.cores:g} cores and {_gib(self.memory)} in use"


def usage_of(clusters: list[Cluster]) -> Usage:
    """Resources held by these clusters: their schedulers and the workers whose
    processes exist (starting, running or retiring)."""
    active = [c for c in clusters if c.status.active]
    cores = 0.0
    memory = 0
    for c in active:
        n = sum(1 for w in c.workers.values() if w.status in _HOLDING)
        cores += c.config.scheduler_cores + n * c.config.worker_cores
        memory += c.config.scheduler_memory + n * c.config.worker_memory
    return Usage(len(active), cores, memory)


def check_new_cluster(limits: UserLimits, usage: Usage, config: ClusterConfig) -> str | None:
    """Why a new cluster would exceed the user's limits, or None."""
    if limits.max_clusters is not None and usage.clusters + 1 > limits.max_clusters:
        return (
            f"You may run at most {limits.max_clusters} cluster(s) at once and already have "
            f"{usage.clusters}; stop one (gateway.stop_cluster(name)) before creating another"
        )
    if limits.max_cores is not None and usage.cores + config.scheduler_cores > limits.max_cores:
        return (
            f"A new cluster needs {config.scheduler_cores:g} core(s) for its scheduler, but your "
            f"limit is {limits.max_cores:g} cores with {usage.describe()}"
        )
    if limits.max_memory is not None and usage.memory + config.scheduler_memory > limits.max_memory:
        return (
            f"A new cluster needs {_gib(config.scheduler_memory)} for its scheduler, but "
            f"your limit is {_gib(limits.max_memory)} with {usage.describe()}"
        )
    return None


@dataclass(frozen=True)
class Ceiling:
    """The most workers a cluster may have, and which limit says so (for the message)."""

    workers: int
    why: str


def cluster_ceiling(config: ClusterConfig) -> Ceiling | None:
    """The tightest of the cluster's own limits (max workers, cores, memory)."""
    bounds = []
    if config.max_workers is not None:
        bounds.append(
            Ceiling(config.max_workers, f"this cluster's limit of {config.max_workers} workers")
        )
    if config.max_cores is not None:
        bounds.append(
            Ceiling(
                int(config.max_cores // config.worker_cores),
                f"this cluster's limit of {config.max_cores:g} cores "
                f"with {config.worker_cores:g} per worker",
            )
        )
    if config.max_memory is not None:
        bounds.append(
            Ceiling(
                int(config.max_memory // config.worker_memory),
                f"this cluster's limit of {_gib(config.max_memory)} "
                f"with {_gib(config.worker_memory)} per worker",
            )
        )
    return tightest(*bounds)


def user_ceiling(limits: UserLimits, usage: Usage, config: ClusterConfig) -> Ceiling | None:
    """How many workers of this cluster's size fit under the owner's limits, given
    ``usage``: what the owner holds apart from this cluster's workers."""
    bounds = []
    if limits.max_cores is not None:
        bounds.append(
            Ceiling(
                int((limits.max_cores - usage.cores) // config.worker_cores),
                f"your limit of {limits.max_cores:g} cores across all your clusters: "
                f"{usage.cores:g} are held by schedulers and other clusters, "
                f"each worker needs {config.worker_cores:g}",
            )
        )
    if limits.max_memory is not None:
        bounds.append(
            Ceiling(
                int((limits.max_memory - usage.memory) // config.worker_memory),
                f"your limit of {_gib(limits.max_memory)} across all your clusters: "
                f"{_gib(usage.memory)} are held by schedulers and other clusters, "
                f"each worker needs {_gib(config.worker_memory)}",
            )
        )
    return tightest(*bounds)


def tightest(*ceilings: Ceiling | None) -> Ceiling | None:
    """The lowest of the given ceilings (never below 0 workers), or None for no limit."""
    present = [c for c in ceilings if c is not None]
    if not present:
        return None
    low = min(present, key=lambda c: c.workers)
    return Ceiling(max(0, low.workers), low.why)


def _gib(size: int) -> str:
    return f"{size / GIB:.3g} GiB"
