"""Direct connect (issue 13, item 3): hubgate's client talks to its cluster's scheduler
itself when it can reach it, and through the scheduler proxy when it cannot or is told
to; only the owner learns the scheduler's address, and the address alone opens nothing.
Everything goes through a real hub; client code runs in fresh processes, as on a laptop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.hub_api import checked, run_client, values
from tests.e2e.service_api import ServiceApi, check_with_openapi

pytestmark = pytest.mark.slow

# Prints where the cluster's Client connected and a computation's result; the client's
# direct-connect log lines go to stdout, everything else at WARNING to stderr.
COMPUTE = """
import logging, sys
logging.basicConfig(level=logging.WARNING)
log = logging.getLogger("hubgate.client.direct_connect")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(logging.StreamHandler(sys.stdout))
import dask.config
from hubgate import Gateway

def compute(cluster, tag):
    client = cluster.get_client()
    print(f"ADDRESS-{tag}", cluster.scheduler_address)
    print(f"CLIENT-{tag}", client.scheduler.address)
    print(f"SUM-{tag}", client.submit(sum, [1, 2, 3]).result())
    print(f"GATHER-{tag}", len(client.gather(client.scatter(b"x" * 2**20))))
    print(f"DASHBOARD-{tag}", cluster.dashboard_link)
    client.close()
"""


@pytest.fixture(scope="module")
def api(hub: RunningHub) -> ServiceApi:
    return ServiceApi(hub)


@pytest.fixture(scope="module")
def alices(api: ServiceApi) -> Iterator[dict[str, object]]:
    """A running cluster of alice's with one worker, as alice sees it."""
    name = api.create_cluster("alice")["name"]
    try:
        api.ok("POST", f"/api/hubgate/clusters/{name}/scale", {"count": 1}, user="alice")
        yield api.wait_running(name, "alice", workers=1)
    finally:
        api.stop_and_wait(name)


def test_only_the_owner_gets_the_direct_address(
    api: ServiceApi, hub: RunningHub, alices: dict[str, object]
) -> None:
    name = alices["name"]
    direct = alices["direct_scheduler_address"]
    # the local backend's route: the scheduler listens on loopback
    assert isinstance(direct, str) and direct.startswith("tls://127.0.0.1:"), alices
    assert alices["scheduler_address"] == f"{hub.settings.proxy_address}/{name}"
    listed = api.ok("GET", "/api/hubgate/clusters", user="alice")["clusters"]
    assert [c["direct_scheduler_address"] for c in listed if c["name"] == name] == [direct]

    # an admin sees the cluster but neither its credentials nor where its scheduler is
    as_admin = api.ok("GET", f"/api/hubgate/clusters/{name}", user="admin")
    assert as_admin["status"] == "RUNNING"
    assert as_admin["direct_scheduler_address"] is None
    everyone = api.ok("GET", "/api/hubgate/clusters?all_users=1", user="admin")["clusters"]
    assert [c["direct_scheduler_address"] for c in everyone if c["name"] == name] == [None]
    scaled = api.ok("POST", f"/api/hubgate/clusters/{name}/scale", {"count": 1}, user="admin")
    assert scaled["cluster"]["direct_scheduler_address"] is None

    # another user learns nothing about it
    reply = api.request("GET", f"/api/hubgate/clusters/{name}", user="bob")
    assert reply.status == 403
    check_with_openapi("GET", f"/api/hubgate/clusters/{name}", reply)
    assert direct not in reply.text
    bobs = api.ok("GET", "/api/hubgate/clusters?status=pending,running", user="bob")
    assert name not in str(bobs)

    # dask-gateway's v1 API (the official client's) is unchanged: its 8 keys, no address
    v1 = api.ok("GET", f"/api/v1/clusters/{name}", user="alice")
    assert sorted(v1) == sorted(
        [
            "name",
            "dashboard_route",
            "status",
            "start_time",
            "stop_time",
            "options",
            "tls_cert",
            "tls_key",
        ]
    )
    assert direct.split("://", 1)[1] not in str(v1)


def test_the_address_alone_opens_nothing(
    hub: RunningHub, alices: dict[str, object], tmp_path: Path
) -> None:
    """The scheduler wants a client certificate of the cluster's own CA: another
    cluster's credentials and a client with the right CA but no certificate both fail."""
    code = f"""
import asyncio, ssl, tempfile, os
from hubgate.client.comm import GatewaySecurity
from hubgate.client.direct_connect import _can_connect
from hubgate.hub_service.tls import generate_cluster_credentials

other = generate_cluster_credentials("someone-else")
print("OTHER", asyncio.run(_can_connect(
    {alices["direct_scheduler_address"]!r},
    GatewaySecurity(other.client_tls_key(), other.client_tls_cert()),
    10,
)))

class NoCertificate(GatewaySecurity):
    # trusts any server, presents no certificate
    def _ssl_context(self):
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

print("NOCERT", asyncio.run(_can_connect(
    {alices["direct_scheduler_address"]!r}, NoCertificate("", ""), 10
)))
"""
    out = checked(run_client(hub, "bob", code, tmp_path))
    for key in ("OTHER", "NOCERT"):
        (problem,) = values(out, key)
        assert problem != "None", out


def test_auto_connects_directly_and_never_through_the_proxy(
    hub: RunningHub, alices: dict[str, object], tmp_path: Path
) -> None:
    name = alices["name"]
    code = (
        COMPUTE
        + f"""
with Gateway().connect({name!r}) as cluster:
    compute(cluster, "auto")
with dask.config.set({{"gateway.direct-connect": "never"}}):
    with Gateway().connect({name!r}) as cluster:
        compute(cluster, "never")
with Gateway(direct_connect="always").connect({name!r}) as cluster:
    compute(cluster, "always")
"""
    )
    proc = run_client(hub, "alice", code, tmp_path)
    out = checked(proc)
    direct = alices["direct_scheduler_address"]
    proxied = f"{hub.settings.proxy_address}/{name}"
    for tag, expected in (("auto", direct), ("never", proxied), ("always", direct)):
        assert values(out, f"ADDRESS-{tag}") == [expected], out
        assert values(out, f"CLIENT-{tag}") == [expected], out
        assert values(out, f"SUM-{tag}") == ["6"], out
        assert values(out, f"GATHER-{tag}") == [str(2**20)], out
        # the dashboard link is the service's entry, whichever way the client connects
        assert values(out, f"DASHBOARD-{tag}") == [alices_dashboard(hub, alices)], out
    assert f"connecting to its scheduler directly at {direct}" in out
    assert "direct" not in proc.stderr.lower(), proc.stderr


def alices_dashboard(hub: RunningHub, record: dict[str, object]) -> str:
    return f"{hub.settings.gateway_address}/clusters/{record['name']}/status"


# A service that reports direct addresses on 127.0.0.2, where nothing listens (schedulers
# bind 127.0.0.1): every direct attempt is refused.
UNREACHABLE = 'c.HubgateService.direct_connect_host = "127.0.0.2"\n'


def test_auto_falls_back_to_the_proxy_silently(
    hub_factory: Callable[..., RunningHub], tmp_path: Path
) -> None:
    unreachable_hub = hub_factory(hubgate_config_extra=UNREACHABLE)
    api = ServiceApi(unreachable_hub)
    name = api.create_cluster("alice")["name"]
    try:
        api.ok("POST", f"/api/hubgate/clusters/{name}/scale", {"count": 1}, user="alice")
        record = api.wait_running(name, "alice", workers=1)
        direct = record["direct_scheduler_address"]
        assert isinstance(direct, str) and direct.startswith("tls://127.0.0.2:"), record
        code = (
            COMPUTE
            + f"""
from hubgate import GatewayClusterError
with Gateway().connect({name!r}) as cluster:
    compute(cluster, "auto")
try:
    Gateway(direct_connect="always").connect({name!r})
except GatewayClusterError as exc:
    print("ALWAYS", exc)
"""
        )
        proc = run_client(unreachable_hub, "alice", code, tmp_path)
        out = checked(proc)
        proxied = f"{unreachable_hub.settings.proxy_address}/{name}"
        assert values(out, "ADDRESS-auto") == [proxied], out
        assert values(out, "CLIENT-auto") == [proxied], out
        assert values(out, "SUM-auto") == ["6"], out
        assert values(out, "GATHER-auto") == [str(2**20)], out
        assert f"its scheduler at {direct} cannot be reached directly" in out
        # silent: no warning or error about it, only the debug line
        assert "direct" not in proc.stderr.lower(), proc.stderr
        (always,) = values(out, "ALWAYS")
        assert f"directly at {direct}" in always and "use 'auto'" in always, out
    finally:
        api.stop_and_wait(name)


def test_the_official_client_still_uses_the_proxy(
    hub: RunningHub, alices: dict[str, object], tmp_path: Path
) -> None:
    """dask-gateway 2026.3.0's client, on a service that gives out direct addresses,
    connects through the proxy as before (it never reads hubgate's API)."""
    name = alices["name"]
    code = f"""
from dask_gateway import Gateway
gateway = Gateway()
cluster = gateway.connect({name!r})
client = cluster.get_client()
print("ADDRESS", cluster.scheduler_address)
print("SUM", client.submit(sum, [1, 2, 3]).result())
client.close()
cluster.close()
gateway.close()
"""
    out = checked(run_client(hub, "alice", code, tmp_path))
    assert values(out, "ADDRESS") == [f"{hub.settings.proxy_address}/{name}"], out
    assert values(out, "SUM") == ["6"], out
