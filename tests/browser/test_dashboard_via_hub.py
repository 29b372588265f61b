"""Real Chromium against the real hub: alice opens her cluster's dashboard (through the
hub's OAuth flow and the service's dashboard proxy) and sees live Bokeh plots; bob is
refused with a readable page; the clusters page shows alice her own clusters and admin
everyone's, and admin's Stop button stops alice's cluster."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, WebSocket, expect

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.service_api import ServiceApi
from tests.fixtures.browser import hub_login

pytestmark = pytest.mark.slow

WAIT_MS = 60_000
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
async def clusters(hub: RunningHub) -> AsyncIterator[dict[str, str]]:
    """alice's cluster with 1 running worker, and one of bob's (for the admin view)."""
    api = ServiceApi(hub)
    names: dict[str, str] = {}

    def start() -> None:
        for user in ("alice", "bob"):
            names[user] = api.create_cluster(user)["name"]
        api.ok("POST", f"/api/hubgate/clusters/{names['alice']}/scale", {"count": 1})
        api.wait_running(names["alice"], "alice", workers=1)
        api.wait_running(names["bob"], "bob")

    try:
        await asyncio.to_thread(start)
        yield names
    finally:
        for name in names.values():
            await asyncio.to_thread(api.stop_and_wait, name)


async def logged_in(new_page: Any, hub: RunningHub, user: str) -> Page:
    page = await new_page(viewport={"width": 1400, "height": 900})
    # next=/hub/home: log in without spawning a single-user server
    await hub_login(page, hub.settings.hub_url, user, hub.settings.password, next_path="/hub/home")
    return page


async def wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def watch_dashboard(page: Page, name: str) -> list[str]:
    """URLs of the frames the page receives over the dashboard's websockets."""
    frames: list[str] = []

    def on_websocket(ws: WebSocket) -> None:
        if f"/clusters/{name}/" in ws.url:
            ws.on("framereceived", lambda payload: frames.append(ws.url))

    page.on("websocket", on_websocket)
    return frames


async def assert_live_dashboard(page: Page, frames: list[str], origin: str) -> None:
    """Plots are drawn once the Bokeh document arrived over the proxied websocket, and
    the server keeps pushing updates to it, all on the dashboard origin."""
    canvas = page.locator(".bk-Canvas").first
    await canvas.wait_for(state="visible")
    box = await canvas.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0
    await wait_until(lambda: len(frames) >= 2, "live updates over the dashboard websocket")
    ws_origin = "ws" + origin[len("http") :]
    assert all(url.startswith(ws_origin + "/") for url in frames), frames


async def test_dashboard_through_the_hub(
    hub: RunningHub, new_page: Any, clusters: dict[str, str]
) -> None:
    name = clusters["alice"]
    # The official client's dashboard_link: on the service's origin.
    url = f"{hub.settings.gateway_address}/clusters/{name}/status"
    origin = hub.settings.dashboard_origin(name)

    alice = await logged_in(new_page, hub, "alice")
    frames = await watch_dashboard(alice, name)
    visited: list[str] = []
    alice.on("request", lambda request: visited.append(request.url))
    # The first visit goes through the hub's OAuth flow, then a ticket takes the
    # browser to the cluster's own origin.
    response = await alice.goto(url)
    assert response is not None and response.status == 200
    assert alice.url == f"{origin}/clusters/{name}/status"
    assert any("/hub/api/oauth2/authorize" in u for u in visited), visited
    assert any(u.startswith(f"{origin}/_hubgate/enter/{name}?ticket=") for u in visited)
    policy = await response.header_value("content-security-policy")
    assert policy is not None and f"frame-ancestors {hub.settings.hub_url}" in policy
    await assert_live_dashboard(alice, frames, origin)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await alice.screenshot(path=str(SCREENSHOTS / "dashboard.png"))
    # The dashboard origin's cookie is its own and scripts cannot read it.
    cookies = [c for c in await alice.context.cookies() if c["domain"] == f"{name}.localhost"]
    assert [(c["name"], c["httpOnly"], c["path"]) for c in cookies] == [
        ("hubgate-dashboard", True, f"/clusters/{name}")
    ]
    assert await alice.evaluate("document.cookie") == ""

    bob = await logged_in(new_page, hub, "bob")
    for refused_url in (url, alice.url):
        response = await bob.goto(refused_url)
        assert response is not None and response.status == 403, refused_url
        text = await bob.locator("body").inner_text()
        assert "Traceback" not in text
        assert await bob.locator(".bk-Canvas").count() == 0
    response = await bob.goto(url)
    assert "This dashboard belongs to another user" in await bob.locator("body").inner_text()


async def test_admin_confirms_before_opening_another_users_dashboard(
    hub: RunningHub, new_page: Any, clusters: dict[str, str]
) -> None:
    name = clusters["alice"]
    url = f"{hub.settings.gateway_address}/clusters/{name}/status"
    origin = hub.settings.dashboard_origin(name)
    admin = await logged_in(new_page, hub, "admin")
    frames = await watch_dashboard(admin, name)
    response = await admin.goto(url)
    assert response is not None and response.status == 200
    # Still on the service's origin: a page that cannot be framed nor keep an opener.
    assert admin.url == url
    headers = await response.all_headers()
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert "Open alice's dashboard as an admin?" in await admin.locator("h1").inner_text()
    async with admin.expect_navigation(url=f"{origin}/clusters/{name}/status"):
        await admin.locator("#open-dashboard").click()
    await assert_live_dashboard(admin, frames, origin)


async def wait_for_row(page: Page, name: str) -> Any:
    """The clusters page's row for ``name``; fails with the page's error banner if the
    page shows one instead."""
    row = page.locator(f'tr[data-name="{name}"]')
    await page.locator(f'tr[data-name="{name}"], #banner:not([hidden])').first.wait_for()
    banner = page.locator("#banner")
    if await banner.is_visible():
        raise AssertionError(f"the clusters page shows an error: {await banner.inner_text()}")
    return row


async def row_owners(page: Page) -> dict[str, str]:
    rows = page.locator("#clusters tbody tr")
    owners = {}
    for index in range(await rows.count()):
        row = rows.nth(index)
        owners[await row.get_attribute("data-name") or ""] = (
            await row.locator("td.owner").text_content() or ""
        )
    return owners


async def test_clusters_page_and_admin_stop(
    hub: RunningHub, new_page: Any, clusters: dict[str, str]
) -> None:
    mine, bobs = clusters["alice"], clusters["bob"]
    page_url = f"{hub.settings.gateway_address}/"

    alice = await logged_in(new_page, hub, "alice")
    response = await alice.goto(page_url)
    assert response is not None and response.status == 200
    row = await wait_for_row(alice, mine)
    assert "Signed in as alice" in await alice.locator("#viewer").inner_text()
    assert await row.locator(".badge").inner_text() == "RUNNING"
    link = await row.locator("td.dashboard a").get_attribute("href")
    assert link == f"{hub.settings.gateway_address}/clusters/{mine}/status"
    owners = await row_owners(alice)
    assert bobs not in owners and set(owners.values()) == {"alice"}, owners

    admin = await logged_in(new_page, hub, "admin")
    await admin.goto(page_url)
    row = await wait_for_row(admin, mine)
    await admin.locator(f'tr[data-name="{bobs}"]').wait_for()
    assert "Signed in as admin (admin)" in await admin.locator("#viewer").inner_text()
    owners = await row_owners(admin)
    assert owners[mine] == "alice" and owners[bobs] == "bob", owners
    # the worker shows as running before the screenshot
    await expect(row.locator("td.workers")).to_have_text(re.compile(r"^1/1"), timeout=WAIT_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await admin.screenshot(path=str(SCREENSHOTS / "admin-page.png"), full_page=True)

    stop = row.locator("button.stop")
    await stop.click()  # arms the button...
    assert await stop.inner_text() == "Confirm stop"
    await stop.click()  # ...and stops
    await expect(row.locator(".badge")).to_have_text(
        re.compile(r"^(STOPPING|STOPPED)$"), timeout=WAIT_MS
    )
    assert await row.locator(".row-msg").inner_text() == ""

    api = ServiceApi(hub)
    stopped = await asyncio.to_thread(
        api.wait_for_cluster,
        mine,
        "alice",
        lambda c: c["status"] == "STOPPED",
        "stopped",
    )
    assert any(e["message"] == "stopped by admin" for e in stopped["events"]), stopped
    # bob's cluster was not touched
    assert (await asyncio.to_thread(api.cluster, bobs, "bob"))["status"] == "RUNNING"
