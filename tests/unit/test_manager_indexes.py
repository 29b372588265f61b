"""What a create, a hello and a restart cost with many clusters: the manager looks up a
user's own clusters and the routes given out in its indexes, never walks every cluster
of the service (with 200 clusters starting at once that walk was paid 200 times per
cluster). The checks themselves still hold: a scheduler reporting another running
cluster's port is refused, before and after a restart. The real manager and store, a
stand-in backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from hubgate.hub_service import manager as manager_module
from hubgate.hub_service.cluster_config import ClusterConfig
from hubgate.hub_service.limits import UserLimits
from hubgate.hub_service.model import Cluster, ClusterStatus, User
from hubgate.hub_service.secrets import SecretBox
from tests.fixtures.standin import StandInService, standin_service

BOX = SecretBox([Fernet.generate_key()])
CLUSTERS = 12


class CountingDict(dict[str, Cluster]):
    """``manager.clusters`` that counts every walk over all of it."""

    walks = 0

    def values(self) -> Any:
        CountingDict.walks += 1
        return super().values()

    def items(self) -> Any:
        CountingDict.walks += 1
        return super().items()

    def __iter__(self) -> Any:
        CountingDict.walks += 1
        return super().__iter__()


def count_walks(service: StandInService) -> None:
    service.manager.clusters = CountingDict(service.manager.clusters)
    CountingDict.walks = 0


async def hello(service: StandInService, cluster: Cluster, port: int, dashboard: int = 0) -> None:
    message: dict[str, Any] = {"type": "hello", "scheduler_port": port, "workers": []}
    if dashboard:
        message["dashboard_port"] = dashboard
    await service.manager.on_agent_message(cluster, message)
    await service.settled()


async def pending_cluster(service: StandInService, user: str = "alice") -> Cluster:
    cluster = await service.manager.create_cluster(User(user), {}, ClusterConfig())
    await service.until(cluster, lambda: bool(cluster.scheduler_state), "its scheduler")
    return cluster


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hubgate.sqlite'}"


async def test_creates_and_hellos_do_not_walk_every_cluster(db_url: str) -> None:
    async with standin_service(db_url, BOX, max_clusters_per_user=CLUSTERS + 1) as service:
        for _ in range(CLUSTERS):
            await service.running_cluster()
        count_walks(service)
        mine = await pending_cluster(service, "alice")  # limits and names: alice's own
        other = await pending_cluster(service, "bob")
        await hello(service, mine, 31000, 31001)
        await hello(service, other, 31002)
        assert mine.status is other.status is ClusterStatus.RUNNING
        user = User("bob")
        assert service.manager.visible_clusters(user, None) == [other]
        assert CountingDict.walks == 0


async def test_another_clusters_route_is_refused(db_url: str) -> None:
    async with standin_service(db_url, BOX) as service:
        first = await pending_cluster(service)
        await hello(service, first, 32000, 32001)
        assert first.status is ClusterStatus.RUNNING
        for port, dashboard in ((32000, 0), (32002, 32001), (32001, 0)):
            thief = await pending_cluster(service, "bob")
            await hello(service, thief, port, dashboard)
            assert thief.status is ClusterStatus.FAILED
            assert "belongs to another cluster" in (thief.reason or "")
        # A cluster's own routes are its own when it says hello again (reconnects)...
        await hello(service, first, 32000, 32001)
        assert first.status is ClusterStatus.RUNNING
        # ...and the ports it gave up on the way are free for others.
        await hello(service, first, 32010, 32011)
        reuse = await pending_cluster(service, "bob")
        await hello(service, reuse, 32000, 32001)
        assert reuse.status is ClusterStatus.RUNNING
        # A stopped cluster holds nothing.
        await service.manager.stop_cluster(first, "done")
        after = await pending_cluster(service, "carol")
        await hello(service, after, 32010, 32011)
        assert after.status is ClusterStatus.RUNNING


async def test_after_a_restart_every_hello_is_one_lookup(db_url: str) -> None:
    async with standin_service(db_url, BOX, max_clusters_per_user=CLUSTERS) as service:
        names = [(await service.running_cluster()).name for _ in range(CLUSTERS)]
        ports = {
            n: int(service.manager.clusters[n].scheduler_address.rpartition(":")[2]) for n in names
        }

    async with standin_service(db_url, BOX, max_clusters_per_user=CLUSTERS) as service:
        await service.settled()
        count_walks(service)
        clusters = service.manager.clusters
        # Every agent reconnects and says hello again, with its own ports.
        for name in names:
            await hello(service, clusters[name], ports[name])
        assert CountingDict.walks == 0
        assert all(clusters[n].status is ClusterStatus.RUNNING for n in names)
        # The routes loaded from the database are still checked.
        thief = await pending_cluster(service, "bob")
        await hello(service, thief, ports[names[-1]])
        assert thief.status is ClusterStatus.FAILED
        assert "belongs to another cluster" in (thief.reason or "")


@pytest.mark.parametrize(
    "limits, weighed",
    [
        (UserLimits(), False),
        (UserLimits(max_cores=1000), True),
        (UserLimits(max_memory=2**50), True),
    ],
)
async def test_ceiling_adds_up_usage_only_under_a_cores_or_memory_limit(
    db_url: str, monkeypatch: pytest.MonkeyPatch, limits: UserLimits, weighed: bool
) -> None:
    """Without a limit on cores or memory, a cluster's worker ceiling does not depend on
    what its owner's other clusters hold: nothing to add up (a restart reconciles every
    cluster with workers)."""
    async with standin_service(
        db_url, BOX, max_clusters_per_user=CLUSTERS, limits_for=lambda user: limits
    ) as service:
        for _ in range(CLUSTERS - 1):
            await service.running_cluster()
        busy = await service.running_cluster()
        sums: list[int] = []
        real_usage_of = manager_module.usage_of

        def counted_usage_of(clusters: list[Cluster]) -> Any:
            sums.append(len(clusters))
            return real_usage_of(clusters)

        monkeypatch.setattr(manager_module, "usage_of", counted_usage_of)
        await service.scale(busy, 2)
        assert bool(sums) is weighed
        if weighed:
            # the owner's clusters only
            assert max(sums) == CLUSTERS
