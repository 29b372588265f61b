"""Workers forgotten beyond ``finished_workers_kept`` break nothing anyone sees: the
official dask-gateway client's cluster reports, hubgate's ``get_logs``, a restart of the
service that takes the cluster over, new worker names. End to end through a real
JupyterHub with the local backend."""

from __future__ import annotations

import pytest
from dask_gateway import Gateway, GatewayCluster
from dask_gateway.auth import JupyterHubAuth
from distributed import Client

from hubgate import Gateway as HubgateGateway
from hubgate.client.auth import JupyterHubAuth as HubgateJupyterHubAuth
from hubgate.tooling.hubrunner import RunningHub
from tests.fixtures.service_process import restart_service, wait_until

pytestmark = pytest.mark.slow


def _worker_names(client: Client) -> set[str]:
    return {w["name"] for w in client.scheduler_info()["workers"].values()}


def test_forgotten_workers_leave_reports_logs_and_restarts_working(hub_factory) -> None:
    hub = hub_factory(hubgate_config_extra="c.HubgateService.finished_workers_kept = 1\n")
    token = hub.tokens["alice"]
    address, proxy = hub.settings.gateway_address, hub.settings.proxy_address
    with (
        Gateway(address, proxy_address=proxy, auth=JupyterHubAuth(api_token=token)) as gateway,
        HubgateGateway(
            address, proxy_address=proxy, auth=HubgateJupyterHubAuth(api_token=token)
        ) as hubgate,
    ):
        cluster = gateway.new_cluster(shutdown_on_close=False)
        try:
            with cluster.get_client(set_as_default=False) as client:
                _check(hub, gateway, hubgate, cluster, client)
        finally:
            gateway.stop_cluster(cluster.name)
            cluster.close()


def _check(
    hub: RunningHub,
    gateway: Gateway,
    hubgate: HubgateGateway,
    cluster: GatewayCluster,
    client: Client,
) -> None:
    prefix = cluster.name[:8]
    cluster.scale(3)
    client.wait_for_workers(3, timeout=120)
    cluster.scale(1)
    wait_until(lambda: len(_worker_names(client)) == 1, 60, "2 workers retired")
    # 3 started, 2 stopped: the service keeps the live one and 1 stopped one (once the
    # agent's reports of both retirements reached it: the scheduler knows first)
    logs = wait_until(
        lambda: (found := hubgate.get_logs(cluster.name)) and len(found["workers"]) == 2 and found,
        60,
        "the service to forget all but one stopped worker",
    )
    assert set(logs["workers"]) > _worker_names(client), logs["workers"].keys()

    [report] = gateway.list_clusters()
    assert report.name == cluster.name and report.status.name == "RUNNING"
    assert gateway.get_cluster(cluster.name).status.name == "RUNNING"

    restart_service(hub)
    wait_until(
        lambda: gateway.get_cluster(cluster.name).status.name == "RUNNING",
        60,
        "the cluster RUNNING again",
    )
    assert client.submit(lambda x: x + 1, 41).result(timeout=120) == 42
    assert len(hubgate.get_logs(cluster.name)["workers"]) == 2
    # New workers carry on the count: no name of a forgotten worker comes back.
    cluster.scale(3)
    client.wait_for_workers(3, timeout=120)
    assert _worker_names(client) >= {f"{prefix}-4", f"{prefix}-5"}, _worker_names(client)
    logs = hubgate.get_logs(cluster.name)
    assert len(logs["workers"]) == 3 + 1, logs["workers"].keys()
