"""When the service takes a cluster's resources back, and when adaptive scaling moves.

Pure decisions on a cluster's record, no I/O: the manager's timer loop asks them every
poll interval and acts on the answer.

- Idle: no task processing or queued (the scheduler agent's ``idle_since``), no worker
  starting, and no scale/adapt request for the cluster's idle timeout. Reading a
  cluster's status and renewing its lease are not activity: a notebook that keeps a
  forgotten cluster open must not keep it forever.
- Lease: a client that asked for ``shutdown_on_close`` renews a lease; when it stops
  renewing (its kernel was killed), the cluster is stopped when the lease runs out.
- Adaptive: up at once to the scheduler's target, down only after the lower target has
  held for a while (a pause between two batches of tasks is not the end of the work).
"""

from __future__ import annotations

from .model import Cluster, WorkerStatus


def format_duration(seconds: float) -> str:
    """``5 s``, ``30 min``, ``1.5 h``: the unit a person would use."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def idle_stop_reason(cluster: Cluster, now: float) -> str | None:
    """Why an idle cluster should stop now, or None while it is in use."""
    timeout = cluster.config.idle_timeout
    if timeout <= 0 or cluster.idle_since is None:
        return None
    if any(w.status is WorkerStatus.STARTING for w in cluster.workers.values()):
        return None  # someone just asked for workers
    if now - max(cluster.idle_since, cluster.last_request) <= timeout:
        return None
    return f"stopped after {format_duration(timeout)} idle (no tasks and no scale requests)"


def lease_stop_reason(cluster: Cluster, now: float) -> str | None:
    """Why a cluster whose client stopped renewing its lease should stop, or None."""
    if cluster.lease_expires is None or now <= cluster.lease_expires:
        return None
    return (
        "stopped because the client that created it went away "
        "(its kernel or process ended without closing the cluster; its lease ran out)"
    )


def adaptive_workers(
    cluster: Cluster, target: int, low_since: float | None, now: float, scale_down_delay: float
) -> tuple[int | None, float | None]:
    """The worker count adaptive scaling wants now (None: no change) and the new
    ``low_since``: when the target first fell below the current count."""
    ad = cluster.adaptive
    wanted = min(max(target, ad.minimum), ad.maximum)
    current = cluster.requested_workers
    if wanted > current:
        return wanted, None
    if wanted == current:
        return None, None
    if low_since is None:
        return None, now
    if now - low_since >= scale_down_delay:
        return wanted, None
    return None, low_since
