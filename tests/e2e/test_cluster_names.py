"""Cluster display names end to end, through a real JupyterHub: hubgate's API (create
with a name, a clash is a 409, a bad name a 400, a default name otherwise), hubgate's
client (new_cluster(display_name=...), connect by name, list_clusters) and the official
dask-gateway client (name stays the id, the display name is in its report's options)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hubgate.cluster_names import DISPLAY_NAME_OPTION, check_display_name
from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.hub_api import values
from tests.e2e.service_api import ServiceApi
from tests.fixtures.hub import gateway_env, run_python

pytestmark = pytest.mark.slow


@pytest.fixture
def api(hub: RunningHub) -> Iterator[ServiceApi]:
    """The service as alice and bob; every cluster they still run is stopped after."""
    service = ServiceApi(hub)
    yield service
    for user in ("alice", "bob"):
        data = service.ok("GET", "/api/hubgate/clusters?status=pending,running", user=user)
        for cluster in data["clusters"]:
            service.stop_and_wait(cluster["name"])


def test_names_through_hubgates_api(api: ServiceApi) -> None:
    created = api.ok(
        "POST", "/api/hubgate/clusters", {"options": {}, "display_name": "my-analysis"}
    )
    mine = created["name"]
    assert created["display_name"] == "my-analysis" and mine != "my-analysis"
    listed = api.ok("GET", "/api/hubgate/clusters")["clusters"]
    assert {c["name"]: c["display_name"] for c in listed}[mine] == "my-analysis"

    # the same name again: a 409 that names the clash, and no new cluster
    before = api.names("alice")
    clash = api.request("POST", "/api/hubgate/clusters", {"display_name": "my-analysis"})
    assert clash.status == 409
    assert clash.error.startswith(f"You already have a cluster named 'my-analysis' ({mine}, ")
    assert clash.error.endswith("choose another name, or stop that cluster first")
    bad = api.request("POST", "/api/hubgate/clusters", {"display_name": "My Analysis"})
    assert bad.status == 400
    assert bad.error == (
        "display_name 'My Analysis' is not allowed: use 1-30 characters of lowercase letters, "
        "digits and '-', starting with a letter and not ending with '-' (for example "
        "'my-analysis')"
    )
    wrong_type = api.request("POST", "/api/hubgate/clusters", {"display_name": 42})
    assert wrong_type.status == 400 and "must be a string" in wrong_type.error
    assert api.names("alice") == before

    # another user's names do not count; no name gives a readable default
    bobs = api.ok("POST", "/api/hubgate/clusters", {"display_name": "my-analysis"}, user="bob")
    assert bobs["display_name"] == "my-analysis"
    unnamed = api.ok("POST", "/api/hubgate/clusters", {"options": {}})
    assert check_display_name(unnamed["display_name"]) == unnamed["display_name"]
    assert unnamed["display_name"] != "my-analysis"

    # dask-gateway's v1 API: the id as name, the display name among the options
    v1 = api.ok("GET", f"/api/v1/clusters/{mine}")
    assert v1["name"] == mine and v1["options"][DISPLAY_NAME_OPTION] == "my-analysis"
    # a v1 create may name it through the same key; a bad one is a 422 (a ValueError there)
    named = api.ok(
        "POST", "/api/v1/clusters/", {"cluster_options": {DISPLAY_NAME_OPTION: "from-v1"}}
    )
    assert api.cluster(named["name"], "alice")["display_name"] == "from-v1"
    refused = api.request(
        "POST", "/api/v1/clusters/", {"cluster_options": {DISPLAY_NAME_OPTION: "-x"}}
    )
    assert refused.status == 422 and refused.error.startswith("display_name '-x' is not allowed")

    # a stopped cluster's name is free again
    api.stop_and_wait(mine)
    again = api.ok("POST", "/api/hubgate/clusters", {"display_name": "my-analysis"})
    assert again["display_name"] == "my-analysis" and again["name"] != mine


HUBGATE_CLIENT = """
from hubgate import Gateway, GatewayClusterError

with Gateway() as gateway:
    cluster = gateway.new_cluster(display_name="my-analysis", shutdown_on_close=False)
    try:
        print("CREATED", cluster.name, cluster.display_name)
        same = gateway.connect("my-analysis")
        print("CONNECTED", same.name, same.display_name, same.status)
        same.scale(1)
        client = same.get_client()
        print("COMPUTED", client.submit(sum, [1, 2, 3]).result(timeout=120))
        client.close()
        same.close()
        by_id = gateway.connect(cluster.name)
        print("BY_ID", by_id.display_name)
        by_id.close()
        for report in gateway.list_clusters():
            print("LISTED", report.name, report.display_name, repr(report))
        print("REPORT", gateway.get_cluster("my-analysis").name)
        for attempt in (
            lambda: gateway.connect("no-such-cluster"),
            lambda: gateway.new_cluster(display_name="my-analysis"),
            lambda: gateway.new_cluster(display_name="Bad Name"),
        ):
            try:
                attempt()
            except (ValueError, GatewayClusterError) as exc:
                print("ERROR", type(exc).__name__, exc)
    finally:
        gateway.stop_cluster("my-analysis")
        cluster.close()
"""


def test_hubgates_client_creates_connects_and_lists_by_name(
    hub: RunningHub, api: ServiceApi, tmp_path: Path
) -> None:
    out = run_python(HUBGATE_CLIENT, gateway_env(hub, "alice"), tmp_path)
    [created] = values(out, "CREATED")
    cluster_id, display_name = created.split()
    assert display_name == "my-analysis" and cluster_id != display_name
    assert values(out, "CONNECTED") == [f"{cluster_id} my-analysis running"]
    assert values(out, "COMPUTED") == ["6"]
    assert values(out, "BY_ID") == ["my-analysis"]
    assert (
        f"{cluster_id} my-analysis ClusterReport<name={cluster_id}, display_name=my-analysis, status=RUNNING>"
        in values(out, "LISTED")
    )
    assert values(out, "REPORT") == [cluster_id]
    missing, clash, bad = values(out, "ERROR")
    assert missing.startswith(
        "ValueError You have no running cluster named 'no-such-cluster' "
        "(Cluster no-such-cluster not found); yours are: "
    )
    assert f"my-analysis ({cluster_id})" in missing
    assert clash.startswith(
        f"GatewayClusterError You already have a cluster named 'my-analysis' ({cluster_id}, "
    )
    assert bad.startswith("ValueError display_name 'Bad Name' is not allowed")
    record = api.wait_for_cluster(
        cluster_id, "alice", lambda c: c["status"] == "STOPPED", "stopped"
    )
    assert record["display_name"] == "my-analysis"


OFFICIAL_CLIENT = f"""
from dask_gateway import Gateway

with Gateway() as gateway:
    cluster = gateway.new_cluster()  # unchanged: no name, a default one
    named = gateway.new_cluster(**{{"{DISPLAY_NAME_OPTION}": "official-named"}})
    try:
        for report in gateway.list_clusters():
            print("LISTED", report.name, report.options["{DISPLAY_NAME_OPTION}"])
        print("CLUSTER", cluster.name)
        print("NAMED", named.name)
        cluster.scale(1)
        client = cluster.get_client()
        print("COMPUTED", client.submit(sum, [1, 2]).result(timeout=120))
        client.close()
    finally:
        named.shutdown()
        cluster.shutdown()
"""


def test_the_official_client_sees_the_id_and_the_name_in_options(
    hub: RunningHub, api: ServiceApi, tmp_path: Path
) -> None:
    out = run_python(OFFICIAL_CLIENT, gateway_env(hub, "alice"), tmp_path)
    [cluster_id] = values(out, "CLUSTER")
    [named_id] = values(out, "NAMED")
    listed = dict(line.split() for line in values(out, "LISTED"))
    assert listed[named_id] == "official-named"
    default = listed[cluster_id]
    assert check_display_name(default) == default
    assert api.cluster(cluster_id, "alice")["display_name"] == default
    assert values(out, "COMPUTED") == ["3"]
