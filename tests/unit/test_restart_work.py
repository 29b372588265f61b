"""What a restart costs per cluster: taking over idle clusters must not weigh each one
against all the others (with 1,000 clusters that was a million limit checks before the
service answered). The real manager and store, a stand-in backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hubgate.hub_service import manager as manager_module
from hubgate.hub_service.limits import UserLimits
from hubgate.hub_service.model import ClusterStatus
from hubgate.hub_service.secrets import SecretBox
from tests.fixtures.standin import standin_service

BOX = SecretBox([Fernet.generate_key()])
CLUSTERS = 30
# A limit across the owner's clusters, so a cluster with workers has to be weighed
# against the others (without one, nothing is: tests/unit/test_manager_indexes.py).
SETTINGS = {"max_clusters_per_user": CLUSTERS, "limits_for": lambda user: UserLimits(max_cores=100)}


async def test_restart_takes_over_idle_clusters_without_limit_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path / 'hubgate.sqlite'}"
    async with standin_service(db_url, BOX, **SETTINGS) as service:
        names = [(await service.running_cluster()).name for _ in range(CLUSTERS)]
        busy = service.manager.clusters[names[0]]
        await service.scale(busy, 1)

    checks: list[str] = []
    real_usage_of = manager_module.usage_of

    def counted_usage_of(clusters):  # type: ignore[no-untyped-def]
        checks.append("usage_of")
        return real_usage_of(clusters)

    monkeypatch.setattr(manager_module, "usage_of", counted_usage_of)
    async with standin_service(db_url, BOX, **SETTINGS) as service:
        await service.settled()
        clusters = service.manager.clusters
        assert all(clusters[n].status is ClusterStatus.RUNNING for n in names)
        # Only the cluster with a worker is weighed against its owner's others.
        assert 0 < len(checks) <= 2, checks
        assert len(clusters[names[0]].running_workers()) == 1
