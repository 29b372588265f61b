"""Dashboards live on an origin of their own, reached through single-use tickets, and
the scheduler's dashboard port opens only for the service's proxy.

End to end through the real hub: the entry URL the official client builds on the
service's origin, the ticket redirect to the per-cluster dashboard origin
(``http://<name>.localhost:<port>``), its cookie, and the scheduler's own port."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.dashboard_client import DashboardVisit, fetch
from tests.e2e.service_api import ServiceApi
from tests.fixtures.hub import gateway_env, run_python

pytestmark = pytest.mark.slow

# Run as the owner: where the scheduler's dashboard really listens.
DASHBOARD_PORT = """
from dask_gateway import Gateway
cluster = Gateway().connect({name!r})
client = cluster.get_client(set_as_default=False)
print("PORT", client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.http_server.port))
"""


@pytest.fixture
async def clusters(hub: RunningHub) -> AsyncIterator[dict[str, str]]:
    """Two of alice's clusters and one of bob's, running."""
    api = ServiceApi(hub)
    names: dict[str, str] = {}

    def start() -> None:
        for key, user in (("a", "alice"), ("b", "alice"), ("bob", "bob")):
            names[key] = api.create_cluster(user)["name"]
        for key, user in (("a", "alice"), ("b", "alice"), ("bob", "bob")):
            api.wait_running(names[key], user)

    try:
        await asyncio.to_thread(start)
        yield names
    finally:
        for name in names.values():
            await asyncio.to_thread(api.stop_and_wait, name)


def entry(hub: RunningHub, name: str, path: str = "/status") -> str:
    """The official client's dashboard_link: public address + dashboard_route."""
    return f"{hub.settings.gateway_address}/clusters/{name}{path}"


async def fresh_ticket_url(hub: RunningHub, user: str, name: str) -> str:
    response = await fetch(entry(hub, name), {"Authorization": f"token {hub.tokens[user]}"})
    assert response.code == 302, (response.code, response.body)
    return response.headers["Location"]


async def test_owner_enters_with_a_ticket(hub: RunningHub, clusters: dict[str, str]) -> None:
    name = clusters["a"]
    origin = hub.settings.dashboard_origin(name)
    visit = DashboardVisit(hub.tokens["alice"])
    page = await visit.enter(entry(hub, name))
    assert page.code == 200, page.body
    assert visit.url == f"{origin}/clusters/{name}/status"
    assert b"bokeh" in page.body.lower()
    # The cookie is this origin's own, HttpOnly and scoped to the cluster's path.
    assert set(visit.cookies) == {"hubgate-dashboard"}
    policy = page.headers["Content-Security-Policy"]
    assert f"frame-ancestors {hub.settings.hub_url}" in policy
    assert "form-action 'self'" in policy and "base-uri 'self'" in policy
    health = await visit.get(f"{origin}/clusters/{name}/health")
    assert (health.code, health.body) == (200, b"ok")

    # The ticket was single-use.
    again = await visit.redeem(visit.enter_url)
    assert again.code == 403 and b"already used or has expired" in again.body

    # Websockets open only from the dashboard's own origin.
    with pytest.raises(HTTPClientError) as refused:
        await visit.websocket(f"{origin}/clusters/{name}/status/ws", origin=hub.settings.hub_url)
    assert refused.value.code == 403


async def test_a_ticket_opens_only_its_own_cluster(
    hub: RunningHub, clusters: dict[str, str]
) -> None:
    a, b = clusters["a"], clusters["b"]
    ticket_url = await fresh_ticket_url(hub, "alice", a)
    ticket = parse_qs(urlsplit(ticket_url).query)["ticket"][0]
    # Alice's ticket for cluster a, shown at cluster b's origin for cluster b: refused,
    # and spent by the attempt.
    visit = DashboardVisit(hub.tokens["alice"])
    elsewhere = (
        f"{hub.settings.dashboard_origin(b)}/_hubgate/enter/{b}?ticket={ticket}"
        f"&next=/clusters/{b}/status"
    )
    assert (await visit.redeem(elsewhere)).code == 403
    assert (await visit.redeem(ticket_url)).code == 403
    assert not visit.cookies
    # At a's own enter URL but for b's path: refused before the ticket is looked at.
    ticket_url = await fresh_ticket_url(hub, "alice", a)
    wrong_path = re.sub(r"next=[^&]+", f"next=/clusters/{b}/status", ticket_url)
    assert (await visit.redeem(wrong_path)).code == 400
    # A session for a does not open b, even on a single browser.
    assert (await visit.redeem(ticket_url)).code == 302
    other = await visit.get(f"{hub.settings.dashboard_origin(b)}/clusters/{b}/status")
    assert other.code == 403


async def test_other_users_are_refused_on_both_origins(
    hub: RunningHub, clusters: dict[str, str]
) -> None:
    name = clusters["a"]
    bob = DashboardVisit(hub.tokens["bob"])
    refused = await bob.enter(entry(hub, name))
    assert refused.code == 403
    assert b"This dashboard belongs to another user" in refused.body
    direct = await bob.get(f"{hub.settings.dashboard_origin(name)}/clusters/{name}/status")
    assert direct.code == 403
    # Bob's ticket for his own cluster does not open alice's, at her origin or his.
    bobs_ticket = parse_qs(urlsplit(await fresh_ticket_url(hub, "bob", clusters["bob"])).query)
    forged = (
        f"{hub.settings.dashboard_origin(name)}/_hubgate/enter/{name}?ticket="
        f"{bobs_ticket['ticket'][0]}&next=/clusters/{name}/status"
    )
    assert (await bob.redeem(forged)).code == 403
    assert not bob.cookies


async def test_the_scheduler_port_refuses_all_but_the_proxy(
    hub: RunningHub, clusters: dict[str, str], tmp_path: Path
) -> None:
    name = clusters["a"]
    out = await asyncio.to_thread(
        run_python, DASHBOARD_PORT.format(name=name), gateway_env(hub, "alice"), tmp_path
    )
    port = int(out.split("PORT", 1)[1].split()[0])
    direct = await fetch(f"http://127.0.0.1:{port}/clusters/{name}/health")
    assert direct.code == 403
    direct = await fetch(f"http://127.0.0.1:{port}/clusters/{name}/status")
    assert direct.code == 403
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(f"ws://127.0.0.1:{port}/clusters/{name}/status/ws")
    assert refused.value.code == 403
    # Through the proxy (which presents the cluster's secret) it answers.
    visit = DashboardVisit(hub.tokens["alice"])
    assert (await visit.enter(entry(hub, name, "/health"))).body == b"ok"
