"""A restart of the service loses no cluster: running clusters come back RUNNING and
usable, their clients keep computing, and nothing is orphaned. With the default SQLite
file and with a real PostgreSQL server (the production path)."""

from __future__ import annotations

import dask
import pytest
from dask_gateway import Gateway
from dask_gateway.auth import JupyterHubAuth

from hubgate.tooling.hubrunner import RunningHub
from tests.fixtures.service_process import cluster_processes, restart_service, wait_until

pytestmark = pytest.mark.slow


def _restart_keeps_clusters(hub: RunningHub) -> None:
    gateway = Gateway(
        hub.settings.gateway_address,
        proxy_address=hub.settings.proxy_address,
        auth=JupyterHubAuth(api_token=hub.tokens["alice"]),
    )
    clusters = [gateway.new_cluster(shutdown_on_close=False) for _ in range(3)]
    try:
        clients = []
        for cluster in clusters:
            cluster.scale(1)
            # A client gives up reconnecting after distributed.comm.timeouts.connect
            # (30 s): give the clients more than a restart can take on a loaded
            # machine, so what is tested is the service, not the machine's load.
            with dask.config.set({"distributed.comm.timeouts.connect": "120s"}):
                client = cluster.get_client(set_as_default=False)
            client.wait_for_workers(1, timeout=120)
            assert client.submit(lambda x: x * 2, 21).result(timeout=60) == 42
            clients.append(client)
        before = sorted(cluster_processes(hub))
        assert len(before) == 6, before  # 3 schedulers + 3 workers

        restart_service(hub)

        names = {c.name for c in clusters}

        def all_running() -> bool:
            reports = {r.name: r for r in gateway.list_clusters()}
            return all(n in reports and reports[n].status.name == "RUNNING" for n in names)

        wait_until(all_running, 60, "the 3 clusters to be RUNNING again")
        for client in clients:
            assert client.submit(lambda x: x + 1, 41).result(timeout=120) == 42
        same = gateway.connect(clusters[0].name)
        fresh = same.get_client(set_as_default=False)
        assert fresh.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        fresh.close()
        # nothing orphaned, nothing duplicated
        assert sorted(cluster_processes(hub)) == before
        for client in clients:
            client.close()
    finally:
        for cluster in clusters:
            gateway.stop_cluster(cluster.name)
        wait_until(lambda: not cluster_processes(hub), 60, "every cluster process to exit")
        gateway.close()


def test_restart_keeps_clusters_sqlite(hub_factory) -> None:
    _restart_keeps_clusters(hub_factory())


def test_restart_keeps_clusters_postgresql(hub_factory, postgres_db_url: str) -> None:
    hub = hub_factory(hubgate_config_extra=f"c.HubgateService.db_url = {postgres_db_url!r}")
    _restart_keeps_clusters(hub)
