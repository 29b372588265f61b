"""A scheduler runs its user's code, so what its agent reports is hostile input: routes
are built from the host the backend knows and only the ports the agent reports.

Bob's own code, run on his scheduler, sends the service a forged ``hello`` through the
agent's authenticated websocket: addresses on another host (127.0.0.2, standing for a
cloud metadata endpoint or another machine), ports of another cluster, no port at all.
End to end through the real hub, the dashboard proxy and the scheduler proxy."""

from __future__ import annotations

import json
import socket
import ssl
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.dashboard_client import open_dashboard
from tests.e2e.hub_api import HubgateAPI, run_client, values, wait_until

pytestmark = pytest.mark.slow

FOREIGN_HOST = "127.0.0.2"

# Bob's code: resend the agent's hello with ``changes`` over its own websocket, and
# print the scheduler's real dashboard port.
FORGE = """
import asyncio
import json
from dask_gateway import Gateway

def forge(dask_scheduler, changes=json.loads({changes!r})):
    agent = dask_scheduler.plugins["hubgate-agent"]
    hello = agent.hello()
    hello.update(changes)
    if changes:
        # after this client has gone: a client still connected while the service
        # stops the scheduler spends a minute reconnecting before it exits
        asyncio.get_running_loop().call_later(1, agent._send, hello)
    else:
        agent._send(hello)
    return dask_scheduler.services["dashboard"].port

cluster = Gateway().connect({name!r})
client = cluster.get_client(set_as_default=False)
print("DASHBOARD_PORT", client.run_on_scheduler(forge), flush=True)
client.close()
cluster.close()
"""


class Listener:
    """A TCP listener that counts the connections it accepts; ``http`` ones answer a
    minimal page so that the dashboard proxy's request ends."""

    def __init__(self, host: str, port: int = 0, http: bool = False):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.http = http
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            with conn:
                if self.http:
                    conn.settimeout(5)
                    try:
                        conn.recv(65536)
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nforeign")
                    except OSError:
                        pass

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def bob(hub: RunningHub) -> Iterator[HubgateAPI]:
    api = HubgateAPI(hub, "bob")
    api.stop_all()
    yield api
    api.stop_all()


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    made: list[Listener] = []
    yield made
    for listener in made:
        listener.close()


def forge(hub: RunningHub, name: str, changes: dict[str, Any], cwd: Path) -> str:
    """Run bob's forging code; return what it printed (it may fail once the service
    stops the cluster it refused)."""
    code = FORGE.format(changes=json.dumps(changes), name=name)
    proc = run_client(hub, "bob", textwrap.dedent(code), cwd)
    return proc.stdout + proc.stderr


def dashboard_get(hub: RunningHub, bob: HubgateAPI, name: str) -> None:
    route = bob.cluster(name)["dashboard_url"]
    url = route if route.startswith("http") else hub.settings.hub_url + route
    # Through the service's entry, the ticket and the dashboard origin, as a browser.
    open_dashboard(url, hub.tokens["bob"])


def sni_connect(hub: RunningHub, name: str) -> None:
    """Open a TLS connection to the scheduler proxy for cluster ``name`` (the proxy
    routes by SNI to the cluster's scheduler route)."""
    port = int(hub.settings.proxy_address.rpartition(":")[2])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            with context.wrap_socket(sock, server_hostname=f"daskgateway-{name}"):
                pass
        except (OSError, ssl.SSLError):
            pass  # the listener closes at once: no TLS, and none is needed here


def test_a_forged_host_gets_no_route_only_the_port_is_taken(
    hub: RunningHub, bob: HubgateAPI, listeners: list[Listener], tmp_path: Path
) -> None:
    name = bob.create()["name"]
    bob.wait_running(name)
    # The same port numbers on the backend's host (loopback for the local backend) and
    # on the foreign host the forged hello names.
    own_dashboard = Listener("127.0.0.1", http=True)
    foreign_dashboard = Listener(FOREIGN_HOST, own_dashboard.port, http=True)
    own_scheduler = Listener("127.0.0.1")
    foreign_scheduler = Listener(FOREIGN_HOST, own_scheduler.port)
    listeners += [own_dashboard, foreign_dashboard, own_scheduler, foreign_scheduler]

    out = forge(
        hub,
        name,
        {
            "scheduler_address": f"tls://{FOREIGN_HOST}:{own_scheduler.port}",
            "dashboard_address": f"http://{FOREIGN_HOST}:{own_dashboard.port}",
            "scheduler_port": own_scheduler.port,
            "dashboard_port": own_dashboard.port,
        },
        tmp_path,
    )
    assert values(out, "DASHBOARD_PORT"), out

    # Until the service has read the forged hello, the proxy still reaches the real
    # dashboard; afterwards it connects where the new route points.
    def moved() -> bool:
        dashboard_get(hub, bob, name)
        return own_dashboard.accepted + foreign_dashboard.accepted > 0

    wait_until(moved, "the dashboard proxy following the forged hello")
    assert foreign_dashboard.accepted == 0
    assert own_dashboard.accepted >= 1

    sni_connect(hub, name)
    wait_until(
        lambda: own_scheduler.accepted + foreign_scheduler.accepted > 0,
        "the scheduler proxy connecting",
    )
    assert foreign_scheduler.accepted == 0
    assert own_scheduler.accepted >= 1
    record = bob.cluster(name)
    assert record["status"] == "RUNNING", record


def test_another_clusters_port_fails_the_cluster(
    hub: RunningHub, bob: HubgateAPI, tmp_path: Path
) -> None:
    first = bob.create()["name"]
    second = bob.create()["name"]
    bob.wait_running(first)
    bob.wait_running(second)
    # Resending the genuine hello changes nothing and tells us the first's port.
    [port] = values(forge(hub, first, {}, tmp_path), "DASHBOARD_PORT")
    assert bob.cluster(first)["status"] == "RUNNING"

    forge(hub, second, {"dashboard_port": int(port)}, tmp_path)
    record = bob.wait_for(second, lambda r: r["status"] == "FAILED", "refusing the hello", 60)
    assert "cannot route to this cluster's scheduler" in record["reason"], record
    assert f"127.0.0.1:{port} belongs to another cluster" in record["reason"], record
    assert bob.cluster(first)["status"] == "RUNNING"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"scheduler_port": 70000}, "the scheduler port it reported (70000) is not a port"),
        ({"dashboard_port": "8787"}, "the dashboard port it reported ('8787') is not a port"),
        (
            {"scheduler_port": None, "scheduler_address": "tls://169.254.169.254"},
            "the scheduler address it reported ('tls://169.254.169.254') has no valid port",
        ),
    ],
)
def test_a_hello_without_valid_ports_fails_the_cluster(
    hub: RunningHub, bob: HubgateAPI, tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    name = bob.create()["name"]
    bob.wait_running(name)
    forge(hub, name, changes, tmp_path)
    record = bob.wait_for(name, lambda r: r["status"] == "FAILED", "refusing the hello", 60)
    assert expected in record["reason"], record


OVERSIZE = """
import asyncio
from dask_gateway import Gateway

async def oversize(dask_scheduler):
    agent = dask_scheduler.plugins["hubgate-agent"]
    conn = agent._conn
    agent._send({{"type": "activity", "padding": "x" * (2 << 20)}})
    # The service closes the connection: the agent's reader sees it end (the close
    # frame itself may be lost when the service aborts in the middle of the upload).
    for _ in range(400):
        if agent._conn is not conn:
            return "closed"
        await asyncio.sleep(0.05)
    return "open"

cluster = Gateway().connect({name!r})
client = cluster.get_client(set_as_default=False)
print("CONNECTION", client.run_on_scheduler(oversize), flush=True)
"""


def test_an_oversized_agent_message_closes_the_agents_connection(
    hub: RunningHub, bob: HubgateAPI, tmp_path: Path
) -> None:
    """2 MiB from the agent (the service reads at most 1 MiB): the service closes the
    websocket before parsing it; the agent reconnects and the cluster works."""
    name = bob.create()["name"]
    bob.wait_running(name)
    proc = run_client(hub, "bob", textwrap.dedent(OVERSIZE.format(name=name)), tmp_path)
    assert values(proc.stdout, "CONNECTION") == ["closed"], proc.stdout + proc.stderr
    assert bob.ok("POST", f"clusters/{name}/scale", {"count": 1})
    bob.wait_for(name, lambda r: r["workers"]["running"] == 1, "a worker after reconnecting", 60)
    assert bob.cluster(name)["status"] == "RUNNING"
