"""DaskHub's lab extension against hubgate: dask-labextension 7 with
dask-labextension-gateway 0.1 (its cluster manager is the official dask-gateway client) in
the single-user servers of a real hub.

Through the servers' ``dask/clusters`` API alice creates and scales a cluster; the
dashboard check of its link (``dask/dashboard-check/<url>``) is active with the plot list
in her server and inactive in bob's, and in admin's (a server's token never acts as an
admin: admins open others' dashboards in a tab, after the confirmation page). In Chromium
a plot pane dask-labextension opens in alice's lab draws the Bokeh plot.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import Page, expect

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.service_api import ServiceApi
from tests.fixtures.browser import hub_login
from tests.fixtures.hub import start_hub
from tests.fixtures.service_process import wait_until

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# dask-labextension-gateway is off unless the dask config says so.
USE_GATEWAY = """
c.Spawner.environment["DASK_LABEXTENSION__USE_GATEWAY"] = "True"
"""
START_S = 240  # a cluster start on a loaded 2-core machine


@pytest.fixture(scope="module")
def dask_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    running = start_hub(tmp_path_factory.mktemp("dask-hub"), jupyterhub_config_extra=USE_GATEWAY)
    yield running
    running.stop()


class SingleUserServer:
    """A user's running single-user server, called with the user's token."""

    def __init__(self, hub: RunningHub, user: str) -> None:
        self.hub = hub
        self.user = user
        self.base = f"{hub.settings.hub_url}/user/{user}"

    def start(self) -> SingleUserServer:
        if not self.hub.api("GET", f"/users/{self.user}").get("servers", {}).get(""):
            self.hub.api("POST", f"/users/{self.user}/server")
        self.hub.wait_for(
            lambda: self.hub.api("GET", f"/users/{self.user}")["servers"][""]["ready"],
            120,
            f"{self.user}'s server",
        )
        return self

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base}/{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.hub.tokens[self.user]}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=START_S) as response:
                text = response.read()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.call(method, path, body)
        assert 200 <= status < 300, f"{self.user}: {method} {path}: {status} {data}"
        return data

    def dashboard_check(self, link: str) -> dict[str, Any]:
        # As the lab asks: the link encodeURIComponent-ed as one path segment.
        return self.ok("GET", "dask/dashboard-check/" + quote(link, safe=""))

    def wait_for_model(self, cluster_id: str, condition: Any, what: str) -> dict[str, Any]:
        models: list[Any] = []

        def reached() -> bool:
            models.append(self.ok("GET", f"dask/clusters/{cluster_id}"))
            return bool(condition(models[-1]))

        try:
            self.hub.wait_for(reached, START_S, what)
        except TimeoutError as exc:
            raise AssertionError(f"{what}: last model {models[-1:]}") from exc
        return models[-1]


@pytest.fixture(scope="module")
def servers(dask_hub: RunningHub) -> dict[str, SingleUserServer]:
    return {u: SingleUserServer(dask_hub, u).start() for u in ("alice", "bob", "admin")}


@pytest.fixture(scope="module")
def alices_cluster(
    dask_hub: RunningHub, servers: dict[str, SingleUserServer]
) -> Iterator[dict[str, Any]]:
    """A cluster alice made in dask-labextension's cluster manager (a PUT), scaled to one
    worker (a PATCH)."""
    alice = servers["alice"]
    model = alice.ok("PUT", "dask/clusters")
    name = model["id"].removeprefix("u-u-i-d-")
    try:
        model = alice.wait_for_model(
            model["id"], lambda m: not m["name"].endswith(")"), "the cluster to start"
        )
        alice.ok("PATCH", f"dask/clusters/{model['id']}", {"workers": 1})
        yield alice.wait_for_model(model["id"], lambda m: m["workers"] == 1, "one worker")
    finally:
        ServiceApi(dask_hub).stop_and_wait(name)


def test_cluster_manager_creates_and_scales_through_hubgate(
    dask_hub: RunningHub, servers: dict[str, SingleUserServer], alices_cluster: dict[str, Any]
) -> None:
    name = alices_cluster["name"]
    assert alices_cluster["id"] == f"u-u-i-d-{name}"
    assert alices_cluster["dashboard_link"] == (
        f"{dask_hub.settings.gateway_address}/clusters/{name}/status"
    )
    service = ServiceApi(dask_hub).cluster(name, "alice")
    assert service["owner"] == "alice" and service["workers"]["requested"] == 1
    listed = servers["alice"].ok("GET", "dask/clusters")
    assert [m["id"] for m in listed] == [alices_cluster["id"]]
    # bob's cluster manager (the official client with his server's token) lists none of hers
    assert servers["bob"].ok("GET", "dask/clusters") == []


def test_dashboard_check_is_active_for_the_owner_only(
    servers: dict[str, SingleUserServer], alices_cluster: dict[str, Any]
) -> None:
    link = alices_cluster["dashboard_link"]
    entry = link.removesuffix("/status")
    mine = servers["alice"].dashboard_check(link)
    assert mine["isActive"] is True and mine["url"] == entry, mine
    assert mine["plots"]["Individual Task Stream"] == "/individual-task-stream", mine
    # dask-labextension's own list (distributed's individual-plots.json), dozens of them
    assert len(mine["plots"]) > 10 and all(
        path.startswith("/individual-") or path.startswith("/statics/individual-")
        for path in mine["plots"].values()
    ), mine
    for user in ("bob", "admin"):
        assert servers[user].dashboard_check(link) == {
            "url": entry,
            "isActive": False,
            "plots": {},
        }, user


async def open_lab(new_page: Any, hub: RunningHub, user: str) -> Page:
    page = await new_page(viewport={"width": 1400, "height": 900})
    await hub_login(page, hub.settings.hub_url, user, hub.settings.password, next_path="/hub/spawn")
    await page.locator(".jp-LabShell").wait_for(timeout=180_000)
    await page.goto(f"{hub.settings.hub_url}/user/{user}/lab?reset")
    await page.locator(".jp-LabShell").wait_for(timeout=180_000)
    return page


def _root_checks(hub: RunningHub) -> int:
    """How often dask-labextension checked the hub's root from the browser (its restored
    URL): the hub logs each as a redirect of ``/individual-plots.json``."""
    return hub.log_path().read_text(errors="replace").count("GET /individual-plots.json?")


async def test_a_plot_pane_draws_the_owners_plot(
    dask_hub: RunningHub, new_page: Any, alices_cluster: dict[str, Any]
) -> None:
    name = alices_cluster["name"]
    page = await open_lab(new_page, dask_hub, "alice")
    # Both extensions load: hubgate's sidebar beside dask-labextension's.
    await expect(
        page.locator('.jp-SideBar .lm-TabBar-tab[data-id="hubgate-clusters"]')
    ).to_have_count(1)
    checks_before = _root_checks(dask_hub)
    await page.locator('.jp-SideBar .lm-TabBar-tab[data-id="dask-dashboard-launcher"]').click()
    # dask-labextension restores the URL it last had (here the hub's root, which it checks
    # from the browser) after its panel shows, and a link pasted before that is
    # overwritten: paste once it has checked the restored URL.
    await asyncio.to_thread(
        wait_until,
        lambda: _root_checks(dask_hub) > checks_before,
        30,
        "dask-labextension to check the URL it restored",
    )
    # What a user does: paste the cluster's dashboard link into dask-labextension's box.
    url_box = page.locator(".dask-URLInput-wrapper input")
    await url_box.fill(alices_cluster["dashboard_link"])
    await url_box.press("Enter")
    button = page.locator('.dask-DashboardListing-item button[value="Task Stream"]')
    await expect(button).to_be_enabled(timeout=60_000)
    await button.click()

    pane = page.locator(".dask-DaskDashboard-widget iframe")
    await expect(pane).to_have_attribute(
        "src", f"{dask_hub.settings.gateway_address}/clusters/{name}/individual-task-stream"
    )
    plot = page.frame_locator(".dask-DaskDashboard-widget iframe")
    await plot.locator(".bk-Canvas").first.wait_for(state="visible", timeout=60_000)
    # The plot came from the cluster's own origin, through the entry's ticket.
    frame = next(
        f for f in page.frames if f.url.startswith(dask_hub.settings.dashboard_origin(name))
    )
    assert frame.url == (
        f"{dask_hub.settings.dashboard_origin(name)}/clusters/{name}/individual-task-stream"
    )
    # The page a dashboard serves is hostile: it cannot read the check (nor anything else
    # of the lab's server) with the owner's login.
    check_url = f"{dask_hub.settings.hub_url}/user/alice/dask/dashboard-check/" + quote(
        alices_cluster["dashboard_link"], safe=""
    )
    read = await frame.evaluate(
        """url => fetch(url, {credentials: "include"})
            .then(r => r.text()).then(text => "read: " + text, e => "refused: " + e)""",
        check_url,
    )
    assert read.startswith("refused: "), read
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "dask-labextension.png"))
