"""When idle clusters, orphans and adaptive scale-downs are due (hub_service/culling.py)."""

from __future__ import annotations

from hubgate.hub_service.cluster_config import ClusterConfig
from hubgate.hub_service.culling import (
    adaptive_workers,
    format_duration,
    idle_stop_reason,
    lease_stop_reason,
)
from hubgate.hub_service.model import Cluster, ClusterStatus, Worker, WorkerStatus
from hubgate.hub_service.tls import generate_cluster_credentials

CREDENTIALS = generate_cluster_credentials("x")
T0 = 1_000_000.0


def running(idle_timeout: float = 0) -> Cluster:
    return Cluster(
        name="x",
        username="alice",
        options={},
        config=ClusterConfig(idle_timeout=idle_timeout),
        token="",
        credentials=CREDENTIALS,
        status=ClusterStatus.RUNNING,
        last_request=T0,
        idle_since=T0,
    )


def test_format_duration_picks_a_readable_unit() -> None:
    assert format_duration(5) == "5 s"
    assert format_duration(1800) == "30 min"
    assert format_duration(5400) == "90 min"
    assert format_duration(9000) == "2.5 h"


def test_idle_cluster_is_stopped_after_its_timeout_with_the_duration_in_words() -> None:
    cluster = running(idle_timeout=1800)
    assert idle_stop_reason(cluster, T0 + 1799) is None
    reason = idle_stop_reason(cluster, T0 + 1801)
    assert reason is not None and reason.startswith("stopped after 30 min idle")


def test_busy_cluster_or_no_timeout_is_never_idle() -> None:
    busy = running(idle_timeout=5)
    busy.idle_since = None
    assert idle_stop_reason(busy, T0 + 100) is None
    assert idle_stop_reason(running(idle_timeout=0), T0 + 10**6) is None


def test_a_scale_request_or_a_starting_worker_restarts_the_idle_clock() -> None:
    cluster = running(idle_timeout=5)
    cluster.last_request = T0 + 10
    assert idle_stop_reason(cluster, T0 + 12) is None
    cluster.workers["w"] = Worker(name="w", status=WorkerStatus.STARTING)
    assert idle_stop_reason(cluster, T0 + 100) is None


def test_expired_lease_stops_the_cluster() -> None:
    cluster = running()
    assert lease_stop_reason(cluster, T0) is None
    cluster.lease_expires = T0 + 60
    assert lease_stop_reason(cluster, T0 + 59) is None
    reason = lease_stop_reason(cluster, T0 + 61)
    assert reason is not None and "client that created it went away" in reason


def test_adaptive_goes_up_at_once_and_down_after_the_delay() -> None:
    cluster = running()
    cluster.adaptive.active = True
    cluster.adaptive.minimum, cluster.adaptive.maximum = 1, 3
    cluster.requested_workers = 1
    assert adaptive_workers(cluster, 10, None, T0, 5) == (3, None)
    cluster.requested_workers = 3
    assert adaptive_workers(cluster, 0, None, T0, 5) == (None, T0)
    assert adaptive_workers(cluster, 0, T0, T0 + 4, 5) == (None, T0)
    assert adaptive_workers(cluster, 0, T0, T0 + 5, 5) == (1, None)
    # the load came back before the delay: the clock starts over
    assert adaptive_workers(cluster, 3, T0, T0 + 4, 5) == (None, None)
