"""hubgate's client against a real dask-gateway-server 2026.3.0: the users' snippets
(seeds) with ``from hubgate import ...`` must work unchanged."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
import warnings

import dask.array as da
import numpy as np
import pytest

from hubgate import (
    ClusterStatus,
    Gateway,
    GatewayCluster,
    GatewayClusterError,
    GatewayWarning,
)

pytestmark = pytest.mark.slow

USER = "alice"


@pytest.fixture
def gateway(dask_gateway_server):
    gw = Gateway(address=dask_gateway_server.address, auth="basic")
    gw.auth.username = USER
    yield gw
    for report in gw.list_clusters():
        gw.stop_cluster(report.name)
    gw.close()


def n_workers(client) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


def test_users_snippet(gateway, dask_gateway_server, wait_for):
    options = gateway.cluster_options()
    assert dict(options) == {"worker_cores": 1, "worker_memory": 0.5}
    with pytest.raises(ValueError, match="worker_cores must be at most 2, got 3"):
        options.worker_cores = 3
    options.worker_cores = 2

    cluster = gateway.new_cluster(options, shutdown_on_close=False)
    try:
        assert cluster.status == "running"
        assert cluster.scheduler_address == (
            f"gateway://{dask_gateway_server.proxy_address}/{cluster.name}"
        )
        assert cluster.dashboard_link.startswith(dask_gateway_server.address + "/clusters/")
        assert gateway.get_cluster(cluster.name).options == {
            "worker_cores": 2,
            "worker_memory": 0.5,
        }

        cluster.scale(2)
        with warnings.catch_warnings():
            # Same environment on both sides: no version warning.
            warnings.simplefilter("error", GatewayWarning)
            client = cluster.get_client(set_as_default=False)
        client.wait_for_workers(2, timeout=240)
        assert sum(w["nthreads"] for w in client.scheduler_info()["workers"].values()) == 4
        wait_for(
            lambda: len(cluster.scheduler_info.get("workers", {})) == 2,
            timeout=60,
            what="the worker-status stream to report 2 workers",
        )
        assert cluster.check_versions().ok

        x = da.random.random((2000, 2000), chunks=(500, 500))
        y = x + x.T
        z = y[::2, 1000:].mean(axis=1)
        expected_x = x.compute(scheduler="sync")
        result = client.compute(z, sync=True)
        local = (expected_x + expected_x.T)[::2, 1000:].mean(axis=1)
        np.testing.assert_allclose(result, local)

        assert cluster.name in [c.name for c in gateway.list_clusters()]
        assert [c.name for c in gateway.list_clusters(status="running")] == [cluster.name]

        # Adaptive: with nothing to do it settles at the minimum.
        cluster.adapt(minimum=1, maximum=2)
        wait_for(lambda: n_workers(client) == 1, timeout=240, what="adapt down to 1 worker")

        # A second object for the same cluster, closed without shutting it down.
        again = gateway.connect(cluster.name)
        assert again.scheduler_address == cluster.scheduler_address
        other = again.get_client(set_as_default=False)
        assert other.submit(lambda v: v + 1, 41).result(timeout=120) == 42
        again.close()
        assert gateway.get_cluster(cluster.name).status is ClusterStatus.RUNNING

        client.close()
        cluster.close()  # shutdown_on_close=False: the cluster keeps running
        cluster.close()  # idempotent
        assert gateway.get_cluster(cluster.name).status is ClusterStatus.RUNNING
    finally:
        gateway.stop_cluster(cluster.name)
    wait_for(
        lambda: gateway.get_cluster(cluster.name).status is ClusterStatus.STOPPED,
        timeout=120,
        what="the cluster to stop",
    )
    assert cluster.name in [c.name for c in gateway.list_clusters(status=["stopped", "failed"])]


def test_context_manager_and_constructor(gateway, dask_gateway_server):
    with gateway.new_cluster(shutdown_on_close=False, worker_cores=1) as cluster:
        name = cluster.name
    assert cluster.status == "closed"
    assert gateway.get_cluster(name).status is ClusterStatus.RUNNING
    gateway.stop_cluster(name)

    cluster = GatewayCluster(
        address=dask_gateway_server.address, auth=gateway.auth, worker_memory=0.25
    )
    name = cluster.name
    assert gateway.get_cluster(name).options["worker_memory"] == 0.25
    cluster.shutdown()
    assert gateway.get_cluster(name).status in (ClusterStatus.STOPPING, ClusterStatus.STOPPED)

    # Default shutdown_on_close=True in a with block shuts the cluster down on exit.
    with gateway.new_cluster() as cluster:
        name = cluster.name
    assert gateway.get_cluster(name).status in (ClusterStatus.STOPPING, ClusterStatus.STOPPED)


def test_errors_from_a_plain_dask_gateway(gateway):
    with pytest.raises(ValueError, match="worker_cores must be <= 2"):
        gateway.new_cluster(worker_cores=5)
    with pytest.raises(ValueError, match="Unknown fields"):
        gateway.submit(nonsense=1)
    with pytest.raises(ValueError, match="not found"):
        gateway.get_cluster("0" * 32)
    with pytest.raises(ValueError, match="not a valid ClusterStatus"):
        gateway.list_clusters(status="bogus")
    # hubgate's extras are absent, and say so.
    with pytest.raises(NotImplementedError, match="not a hubgate service"):
        gateway.list_clusters(all_users=True)
    with pytest.raises(NotImplementedError, match="not a hubgate service"):
        gateway.get_logs("0" * 32)
    assert gateway.whoami() is None
    assert gateway.get_versions()["server"]["version"] == "2026.3.0"


def test_stopped_cluster_cannot_be_connected(gateway, wait_for):
    name = gateway.submit()
    gateway.stop_cluster(name)
    wait_for(
        lambda: gateway.get_cluster(name).status is ClusterStatus.STOPPED,
        timeout=120,
        what="the cluster to stop",
    )
    with pytest.raises(GatewayClusterError, match="already stopped"):
        gateway.connect(name)


async def test_async_api(dask_gateway_server):
    async with Gateway(
        address=dask_gateway_server.address, auth="basic", asynchronous=True
    ) as gateway:
        options = await gateway.cluster_options()
        options.worker_memory = 1
        cluster = await gateway.new_cluster(options)
        async with cluster:
            await cluster.scale(1)
            client = cluster.get_client(set_as_default=False)
            await client
            await client.wait_for_workers(1, timeout=240)
            assert await client.submit(sum, [1, 2, 3]) == 6
            report = await cluster.check_versions()
            assert report.ok, str(report)
            await client.close()
            assert cluster.name in [c.name for c in await gateway.list_clusters()]
        assert cluster.status == "closed"
        deadline = time.monotonic() + 120
        while (await gateway.get_cluster(cluster.name)).status is not ClusterStatus.STOPPED:
            assert time.monotonic() < deadline, "cluster did not stop"
            await asyncio.sleep(0.2)


def test_clusters_left_open_are_shut_down_at_exit(gateway, dask_gateway_server, wait_for):
    """A script that forgets to close its cluster: the atexit hook shuts it down
    (shutdown_on_close=True), and leaves the shutdown_on_close=False one running."""
    script = textwrap.dedent(
        f"""
        from hubgate import Gateway
        gateway = Gateway({dask_gateway_server.address!r}, auth="basic")
        gateway.auth.username = {USER!r}
        doomed = gateway.new_cluster()
        kept = gateway.new_cluster(shutdown_on_close=False)
        print(doomed.name, kept.name)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    doomed, kept = done.stdout.split()
    stopped = (ClusterStatus.STOPPING, ClusterStatus.STOPPED)
    wait_for(
        lambda: gateway.get_cluster(doomed).status in stopped,
        timeout=60,
        what="the forgotten cluster to be shut down",
    )
    assert gateway.get_cluster(kept).status is ClusterStatus.RUNNING
