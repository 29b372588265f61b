"""The arithmetic of per-cluster and per-user limits (hub_service/limits.py)."""

from __future__ import annotations

import pytest

from hubgate.hub_service.cluster_config import GIB, ClusterConfig
from hubgate.hub_service.limits import (
    LimitsPolicy,
    Usage,
    UserLimits,
    check_new_cluster,
    cluster_ceiling,
    tightest,
    usage_of,
    user_ceiling,
)
from hubgate.hub_service.model import Cluster, ClusterStatus, User, Worker, WorkerStatus
from hubgate.hub_service.tls import generate_cluster_credentials

CREDENTIALS = generate_cluster_credentials("x")


def cluster(status: ClusterStatus, workers: list[WorkerStatus], **config: object) -> Cluster:
    c = Cluster(
        name="x",
        username="alice",
        options={},
        config=ClusterConfig(**config),  # type: ignore[arg-type]
        token="",
        credentials=CREDENTIALS,
        status=status,
    )
    for i, ws in enumerate(workers):
        c.workers[f"w{i}"] = Worker(name=f"w{i}", status=ws)
    return c


def test_usage_counts_schedulers_and_live_workers_of_active_clusters() -> None:
    running = cluster(
        ClusterStatus.RUNNING,
        [WorkerStatus.RUNNING, WorkerStatus.STARTING, WorkerStatus.STOPPED, WorkerStatus.FAILED],
        worker_cores=2,
        worker_memory=4 * GIB,
        scheduler_cores=1,
        scheduler_memory=1 * GIB,
    )
    pending = cluster(ClusterStatus.PENDING, [], scheduler_cores=0.5, scheduler_memory=GIB)
    stopped = cluster(ClusterStatus.STOPPED, [WorkerStatus.RUNNING])
    usage = usage_of([running, pending, stopped])
    assert usage == Usage(clusters=2, cores=1 + 2 * 2 + 0.5, memory=GIB + 2 * 4 * GIB + GIB)


def test_new_cluster_refused_over_the_cluster_count_names_limit_and_usage() -> None:
    message = check_new_cluster(UserLimits(max_clusters=2), Usage(2, 3, GIB), ClusterConfig())
    assert message is not None
    assert "at most 2 cluster(s)" in message and "already have 2" in message
    assert check_new_cluster(UserLimits(max_clusters=3), Usage(2, 3, GIB), ClusterConfig()) is None


def test_new_cluster_refused_when_its_scheduler_does_not_fit() -> None:
    config = ClusterConfig(scheduler_cores=2, scheduler_memory=2 * GIB)
    cores = check_new_cluster(UserLimits(max_cores=10), Usage(1, 9, GIB), config)
    assert cores is not None and "limit is 10 cores" in cores and "9 cores" in cores
    memory = check_new_cluster(UserLimits(max_memory=4 * GIB), Usage(1, 1, 3 * GIB), config)
    assert memory is not None and "limit is 4 GiB" in memory and "3 GiB in use" in memory
    assert check_new_cluster(UserLimits(max_cores=11), Usage(1, 9, GIB), config) is None


def test_user_ceiling_is_the_tighter_of_cores_and_memory() -> None:
    config = ClusterConfig(worker_cores=2, worker_memory=3 * GIB)
    limits = UserLimits(max_cores=12, max_memory=12 * GIB)
    ceiling = user_ceiling(limits, Usage(2, 3, 2 * GIB), config)
    # cores: (12 - 3) // 2 = 4; memory: (12 - 2) // 3 = 3
    assert ceiling is not None and ceiling.workers == 3
    assert "12 GiB" in ceiling.why and "each worker needs 3 GiB" in ceiling.why
    assert user_ceiling(UserLimits(), Usage(0, 0, 0), config) is None


def test_user_ceiling_never_negative() -> None:
    ceiling = user_ceiling(UserLimits(max_cores=2), Usage(3, 5, 0), ClusterConfig())
    assert ceiling is not None and ceiling.workers == 0


def test_cluster_ceiling_from_workers_cores_and_memory() -> None:
    assert cluster_ceiling(ClusterConfig()) is None
    by_count = cluster_ceiling(ClusterConfig(max_workers=8, max_cores=100))
    assert by_count is not None and by_count.workers == 8 and "8 workers" in by_count.why
    by_cores = cluster_ceiling(ClusterConfig(worker_cores=4, max_workers=8, max_cores=10))
    assert by_cores is not None and by_cores.workers == 2 and "10 cores" in by_cores.why
    by_memory = cluster_ceiling(ClusterConfig(worker_memory=2 * GIB, max_memory=5 * GIB))
    assert by_memory is not None and by_memory.workers == 2


def test_tightest_of_none_is_none() -> None:
    assert tightest(None, None) is None


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (User("alice"), UserLimits(max_clusters=1, max_cores=4)),
        (User("bob", groups=("students",)), UserLimits(max_clusters=2, max_cores=8)),
        # the most generous of two groups; a missing value means "no limit" and wins
        (
            User("carol", groups=("students", "staff")),
            UserLimits(max_clusters=10, max_cores=None),
        ),
        # a user's own entry overrides their groups'
        (User("dave", groups=("staff",)), UserLimits(max_clusters=1, max_memory=GIB)),
    ],
)
def test_limits_for_user_group_and_default(user: User, expected: UserLimits) -> None:
    default = {"max_clusters": 1, "max_cores": 4}
    groups = {"students": {"max_clusters": 2, "max_cores": 8}, "staff": {"max_clusters": 10}}
    users = {"dave": {"max_clusters": 1, "max_memory": "1G"}}
    assert LimitsPolicy.from_config(default, groups, users).for_user(user) == expected


def test_unknown_limit_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="max_clusters, max_cores, max_memory"):
        UserLimits.from_config({"max_gpus": 1})
