"""HubgateService.stop_clusters_with_server, end to end through a real hub: a cluster
made in a single-user server (its kernel, with the server's own token and the official
dask-gateway client) stops when that server stops, with a reason that names it; a named
server's clusters go with that server only; clusters made with a /hub/token token are
never stopped for want of a server; other users' clusters are untouched; a restart of
the service stops nothing; with the option off (the default) nothing is stopped; and a
hub that will not show the service its users' servers stops the service at start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubgate.tooling.hubrunner import RunningHub, free_port
from tests.e2e.hub_api import HubgateAPI, values, wait_until
from tests.fixtures.hub import ServerKernel, start_hub
from tests.fixtures.service_process import restart_service

pytestmark = pytest.mark.slow

# In a kernel of the server: the official client, Gateway() configured by the hub's
# environment and authenticated with the server's own JUPYTERHUB_API_TOKEN.
CREATE_IN_KERNEL = """
from dask_gateway import Gateway
gateway = Gateway()
cluster = gateway.new_cluster(shutdown_on_close=False)
print("NAME", cluster.name)
cluster.close()
gateway.close()
"""

# Named servers, and pages of one user: the service must follow the hub's pagination.
WATCHING_HUB_CONFIG = """
c.JupyterHub.allow_named_servers = True
c.JupyterHub.api_page_default_limit = 1
c.JupyterHub.api_page_max_limit = 1
"""


def _stopped_with_its_server(server: str) -> str:
    return f"stopped because the JupyterHub server it was created from ({server}) stopped"


@pytest.fixture(scope="module")
def watching_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    running = start_hub(
        tmp_path_factory.mktemp("watching-hub"),
        stop_clusters_with_server=True,
        jupyterhub_config_extra=WATCHING_HUB_CONFIG,
        hubgate_config_extra="c.HubgateService.server_poll_interval = 1",
    )
    yield running
    running.stop()


async def _cluster_from_kernel(kernel: ServerKernel) -> str:
    [name] = values(await kernel.execute(CREATE_IN_KERNEL), "NAME")
    return name


def _stop_server(hub: RunningHub, user: str, server: str = "") -> None:
    hub.api("DELETE", f"/users/{user}/servers/{server}")
    wait_until(
        lambda: server not in hub.api("GET", f"/users/{user}").get("servers", {}),
        f"{user}'s server {server!r} to stop",
        timeout=120,
    )


def _finished(api: HubgateAPI, name: str) -> dict[str, Any]:
    return api.wait_for(name, lambda r: r["status"] in ("STOPPED", "FAILED"), "stop", 120)


def _server_lists(hub: RunningHub) -> list[str]:
    """The hub's log lines of the service listing users' servers (the hub writes the
    state parameter as [secret])."""
    log = hub.log_path().read_text(errors="replace")
    return [
        line
        for line in log.splitlines()
        if "GET /hub/api/users?state=" in line and f"({hub.settings.service_name}@" in line
    ]


def _status(api: HubgateAPI, name: str) -> str:
    return str(api.cluster(name)["status"])


async def test_clusters_stop_with_the_server_they_were_made_in(watching_hub: RunningHub) -> None:
    hub = watching_hub
    alice, bob = HubgateAPI(hub, "alice"), HubgateAPI(hub, "bob")
    kernels = [
        ServerKernel(hub, "alice"),
        ServerKernel(hub, "alice", server_name="second"),
        ServerKernel(hub, "bob"),
    ]
    try:
        for kernel in kernels:
            await kernel.start()
        in_default, in_second, bobs = [await _cluster_from_kernel(k) for k in kernels]
        # with alice's /hub/token token while her servers run: belongs to no server
        outside = alice.create()["name"]
        for api, name in ((alice, in_default), (alice, in_second), (bob, bobs), (alice, outside)):
            api.wait_running(name)
        record = alice.cluster(in_default)
        assert any(
            e["message"] == "created by alice from alice's default server" for e in record["events"]
        ), record["events"]
        assert any(
            e["message"] == 'created by alice from alice\'s server "second"'
            for e in alice.cluster(in_second)["events"]
        )
        assert alice.cluster(outside)["events"][0]["message"] == "created by alice"

        # A restarted service asks the hub before it answers anyone: nothing stopped.
        await asyncio.to_thread(restart_service, hub)
        for api, name in ((alice, in_default), (alice, in_second), (bob, bobs), (alice, outside)):
            assert _status(api, name) == "RUNNING", api.cluster(name)

        await asyncio.to_thread(_stop_server, hub, "alice")
        record = await asyncio.to_thread(_finished, alice, in_default)
        assert record["status"] == "STOPPED"
        reason = _stopped_with_its_server("alice's default server")
        assert record["reason"] == reason
        assert any(e["message"] == reason for e in record["events"]), record["events"]
        assert _status(alice, in_second) == "RUNNING"

        # The last of alice's servers stops: its cluster goes; the one made with her
        # /hub/token token stays (it was judged on the same answer of the hub).
        await asyncio.to_thread(_stop_server, hub, "alice", "second")
        record = await asyncio.to_thread(_finished, alice, in_second)
        assert record["reason"] == _stopped_with_its_server('alice\'s server "second"')
        assert _status(alice, outside) == "RUNNING"
        assert _status(bob, bobs) == "RUNNING"

        # Made from outside while alice has no server at all: not stopped for that.
        while_none = alice.create()["name"]
        alice.wait_running(while_none)
        await asyncio.to_thread(_stop_server, hub, "bob")
        record = await asyncio.to_thread(_finished, bob, bobs)
        assert record["reason"] == _stopped_with_its_server("bob's default server")
        assert _status(alice, outside) == "RUNNING"
        assert _status(alice, while_none) == "RUNNING"

        # One request per page of users with a server (a page holds one user here).
        assert any("&offset=1&" in line for line in _server_lists(hub))
    finally:
        for kernel in kernels:
            await kernel.shutdown()
        alice.stop_all()
        bob.stop_all()


async def test_by_default_clusters_outlive_their_server(hub: RunningHub, kernel_in_server) -> None:
    kernel = await kernel_in_server("bob")
    name = await _cluster_from_kernel(kernel)
    bob = HubgateAPI(hub, "bob")
    try:
        bob.wait_running(name)
        await asyncio.to_thread(_stop_server, hub, "bob")
        record = bob.cluster(name)
        assert record["status"] == "RUNNING", record
        # the server is recorded all the same (turning the option on later covers it)
        assert record["events"][0]["message"] == "created by bob from bob's default server"
        # the service never asked the hub for its users' servers
        assert _server_lists(hub) == []
    finally:
        bob.stop_all()


def test_a_hub_that_will_not_show_servers_stops_the_service_at_start(
    hub: RunningHub, tmp_path: Path
) -> None:
    # The service's token lacks list:users and read:servers: here, alice's token.
    config = tmp_path / "hubgate_config.py"
    config.write_text(
        "c.HubgateService.stop_clusters_with_server = True\n"
        'c.HubgateService.backend_class = "unsafe-local"\n'
        f'c.HubgateService.scheduler_proxy_address = "127.0.0.1:{free_port()}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(
        HUBGATE_DATA_DIR=str(tmp_path / "data"),
        JUPYTERHUB_API_URL=f"{hub.settings.hub_url}/hub/api",
        JUPYTERHUB_API_TOKEN=hub.tokens["alice"],
        JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{free_port()}",
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "hubgate"), "service", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "HubgateService.stop_clusters_with_server is on, but the service's token lacks" in (
        output
    ), output
    assert "list:users" in output and "read:servers" in output, output
    assert "Traceback" not in output, output
