"""Limits on the demo hub (config/demo.py): per cluster 8 workers; per user 3 clusters,
12 cores, 24 GiB; the hub group 'staff' (admin) 10 clusters and 32 cores. End to end with
the real hub, the official dask-gateway client and hubgate's API."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubgate.hubrunner import RunningHub
from tests.e2e.hub_api import HubgateAPI, checked, run_client, values

pytestmark = pytest.mark.slow

EVERYTHING = "clusters?status=pending,running,stopping,stopped,failed"


@pytest.fixture
def bob(hub: RunningHub) -> Iterator[HubgateAPI]:
    api = HubgateAPI(hub, "bob")
    api.stop_all()
    yield api
    api.stop_all()


def test_per_cluster_limit_clamps_adapt_with_the_official_clients_warning(
    hub: RunningHub, bob: HubgateAPI, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        """
        import warnings
        from dask_gateway import Gateway, GatewayWarning
        cluster = Gateway().new_cluster()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                cluster.adapt(minimum=0, maximum=20)
            for w in caught:
                if issubclass(w.category, GatewayWarning):
                    print("WARNING", w.message)
        finally:
            cluster.shutdown()
        """
    )
    out = checked(run_client(hub, "bob", code, tmp_path))
    [warning] = values(out, "WARNING")
    assert warning.startswith(
        "Adapt with `maximum=20, minimum=0` workers would exceed resource limit of 8 "
        "workers. Using `maximum=8, minimum=0` instead."
    ), warning
    assert "this cluster's limit of 8 workers" in warning, warning


def test_user_limits_refuse_a_cluster_too_many_and_clamp_scale(
    hub: RunningHub, bob: HubgateAPI, tmp_path: Path
) -> None:
    names = [bob.create(worker_cores=2, worker_memory=4)["name"] for _ in range(3)]
    for name in names:
        bob.wait_running(name)
    before = len(bob.ok("GET", EVERYTHING)["clusters"])
    folders = set((hub.settings.work_dir / "clusters").iterdir())

    status, body = bob.call("POST", "clusters", {"options": {}})
    assert status == 409, body
    assert "at most 3 cluster(s)" in body["error"] and "already have 3" in body["error"], body
    # the official client shows the same text
    code = textwrap.dedent(
        """
        from dask_gateway import Gateway
        try:
            Gateway().new_cluster()
        except Exception as exc:
            print("ERROR", type(exc).__name__, exc)
        """
    )
    [error] = values(checked(run_client(hub, "bob", code, tmp_path)), "ERROR")
    assert "at most 3 cluster(s)" in error, error
    # nothing half-created
    assert len(bob.ok("GET", EVERYTHING)["clusters"]) == before
    assert set((hub.settings.work_dir / "clusters").iterdir()) == folders

    # 3 schedulers hold 3 of bob's 12 cores; 2-core workers: (12 - 3) // 2 = 4 fit.
    reply = bob.ok("POST", f"clusters/{names[0]}/scale", {"count": 6})
    bob.call("DELETE", f"clusters/{names[0]}")
    assert reply["ok"] is False
    assert reply["msg"].startswith(
        "Scale request of 6 workers would exceed resource limit of 4 workers. Scaling to 4 instead."
    ), reply
    assert "your limit of 12 cores across all your clusters" in reply["msg"], reply
    assert reply["cluster"]["workers"]["requested"] == 4


def test_group_limits_come_from_the_hub(hub: RunningHub) -> None:
    admin = HubgateAPI(hub, "admin")  # in the hub group 'staff'
    try:
        name = admin.create(worker_cores=4)["name"]
        admin.wait_running(name)
        reply = admin.ok("POST", f"clusters/{name}/adapt", {"minimum": 0, "maximum": 20})
        # staff: 32 cores; the scheduler holds 1; 4-core workers: 31 // 4 = 7 (< 8 per cluster)
        assert reply["ok"] is False
        assert "resource limit of 7 workers" in reply["msg"], reply
        assert "your limit of 32 cores" in reply["msg"], reply
        assert reply["cluster"]["adaptive"] == {"active": True, "minimum": 0, "maximum": 7}
    finally:
        admin.stop_all()
