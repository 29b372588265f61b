"""``list_clusters`` carries no private key unless ``HubgateService.list_credentials``
is on, and the official dask-gateway client lists and connects either way (a v1 list
holds the caller's own clusters only, admins' too). End to end through a real JupyterHub
with the local backend."""

from __future__ import annotations

import pytest
from dask_gateway import Gateway
from dask_gateway.auth import JupyterHubAuth
from dask_gateway.client import ClusterStatus

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.hub_api import HubgateAPI

pytestmark = pytest.mark.slow


def _official(hub: RunningHub, user: str) -> Gateway:
    return Gateway(
        hub.settings.gateway_address,
        proxy_address=hub.settings.proxy_address,
        auth=JupyterHubAuth(api_token=hub.tokens[user]),
    )


def test_list_has_no_keys_and_the_official_client_still_connects(
    ops_hub: RunningHub, alice: HubgateAPI
) -> None:
    name = alice.create()["name"]
    alice.wait_running(name)
    with _official(ops_hub, "alice") as gateway:
        (report,) = [r for r in gateway.list_clusters() if r.name == name]
        assert report.status is ClusterStatus.RUNNING
        assert report.tls_cert is None and report.tls_key is None
        # what the seeds do: list, then connect by the listed name
        with gateway.connect(report.name) as cluster, cluster.get_client() as client:
            assert client.scheduler_info()["type"] == "Scheduler"


def test_list_credentials_on_lists_keys_as_dask_gateway_does(hub_factory) -> None:
    hub = hub_factory(hubgate_config_extra="c.HubgateService.list_credentials = True\n")
    alice = HubgateAPI(hub, "alice")
    try:
        name = alice.create()["name"]
        alice.wait_running(name)
        with _official(hub, "alice") as gateway:
            (own,) = [r for r in gateway.list_clusters() if r.name == name]
            assert "BEGIN PRIVATE KEY" in own.tls_key
            assert own.security is not None
    finally:
        alice.stop_all()
