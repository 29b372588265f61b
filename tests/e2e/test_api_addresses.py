"""The service's own address (what single-user servers are given) and the hub's proxy
(what programs outside the hub use) answer dask-gateway's API alike, and the v1 list
follows every change although its text is kept between calls."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.hub_api import HubgateAPI


def v1_get(hub: RunningHub, base: str, path: str, user: str = "alice") -> tuple[Any, Any]:
    request = urllib.request.Request(
        f"{base}/api/v1/{path}", headers={"Authorization": f"token {hub.tokens[user]}"}
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read()), resp.headers


def service_own_address(hub: RunningHub) -> str:
    return f"{hub.settings.service_url}/services/{hub.settings.service_name}"


def test_single_user_servers_call_the_service_at_its_own_address(ops_hub: RunningHub) -> None:
    env = ops_hub.settings.singleuser_environment()
    assert env["DASK_GATEWAY__ADDRESS"] == service_own_address(ops_hub)
    # links people open in their browsers go through the hub
    assert env["DASK_GATEWAY__PUBLIC_ADDRESS"] == ops_hub.settings.gateway_address


def test_both_addresses_list_the_same_and_follow_changes(
    ops_hub: RunningHub, alice: HubgateAPI
) -> None:
    own, through_hub = service_own_address(ops_hub), ops_hub.settings.gateway_address
    name = alice.create()["name"]
    alice.wait_running(name)

    listed, headers = v1_get(ops_hub, own, "clusters/")
    assert listed == v1_get(ops_hub, through_hub, "clusters/")[0]
    assert listed[name]["status"] == "RUNNING"
    assert headers["Cache-Control"] == "no-store"
    assert "ETag" not in headers  # no hash of bodies nobody may cache
    # the list carries no private key (list_credentials is off); the cluster's own
    # answer, which connect() reads, does, and otherwise says the same
    assert listed[name]["tls_key"] is None and listed[name]["tls_cert"] is None
    for _ in range(2):  # a list and a connect in turn each keep their own text
        one = v1_get(ops_hub, own, f"clusters/{name}")[0]
        assert "BEGIN PRIVATE KEY" in one["tls_key"] and one["tls_cert"].startswith("-----BEGIN")
        assert {**one, "tls_key": None, "tls_cert": None} == listed[name]
        assert v1_get(ops_hub, own, "clusters/")[0] == listed

    # another user's view of the same service lists none of alice's clusters
    assert name not in v1_get(ops_hub, own, "clusters/", user="bob")[0]

    alice.call("DELETE", f"clusters/{name}")
    alice.wait_for(name, lambda r: r["status"] == "STOPPED", "stop")
    assert name not in v1_get(ops_hub, own, "clusters/")[0]
    stopped = v1_get(ops_hub, own, "clusters/?status=stopped")[0][name]
    assert stopped["status"] == "STOPPED"
    assert stopped["stop_time"] is not None
    assert stopped["tls_key"] is None and stopped["dashboard_route"] is None
