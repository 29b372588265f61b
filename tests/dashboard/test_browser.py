"""Real Chromium: the dashboard through the proxy, and the clusters page."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .conftest import DASHBOARD, SERVICE_PREFIX, ServedApp

pytestmark = pytest.mark.slow

TIMEOUT_MS = 60_000


async def new_page(browser: Any, app: ServedApp, user: str) -> Any:
    context = await browser.new_context()
    await context.add_cookies([{"name": "test_user", "value": user, "url": app.url}])
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


async def test_dashboard_renders_through_the_proxy(browser: Any, proxy_app: ServedApp) -> None:
    page = await new_page(browser, proxy_app, "alice")
    try:
        response = await page.goto(f"{proxy_app.url}{DASHBOARD}/status")
        assert response.status == 200
        # Plots exist only once the Bokeh document arrived over the proxied websocket.
        await page.locator(".bk-Canvas").first.wait_for(state="attached")
        assert await page.locator(".bk-Canvas").count() > 0
    finally:
        await page.context.close()


async def test_dashboard_of_another_user_shows_a_message(
    browser: Any, proxy_app: ServedApp
) -> None:
    page = await new_page(browser, proxy_app, "bob")
    try:
        response = await page.goto(f"{proxy_app.url}{DASHBOARD}/status")
        assert response.status == 403
        assert "belongs to another user" in await page.locator("body").inner_text()
    finally:
        await page.context.close()


async def wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_clusters_page_stops_a_cluster(browser: Any, page_app: ServedApp) -> None:
    page = await new_page(browser, page_app, "root")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(f"{page_app.url}{SERVICE_PREFIX}")
        alpha = page.locator('tr[data-name="alpha"]')
        await alpha.wait_for()
        assert await alpha.locator("td.owner").inner_text() == "alice"
        assert await alpha.locator(".badge").inner_text() == "RUNNING"
        assert await alpha.locator("td.workers").inner_text() == "2/2"
        assert await alpha.locator("td.memory").inner_text() == "4.0 GiB"
        link = alpha.locator("td.dashboard a")
        assert await link.get_attribute("href") == (
            f"{page_app.url}{SERVICE_PREFIX}clusters/alpha/status"
        )
        assert "Signed in as root (admin)" in await page.locator("#viewer").inner_text()

        # Data is text, never markup.
        beta = page.locator('tr[data-name="beta"]')
        assert await beta.locator("td.owner").inner_text() == "<b>mallory</b>"
        assert await beta.locator(".reason").inner_text() == "<img src=x onerror=alert(1)>"
        assert await page.locator("#clusters img, #clusters td.owner b").count() == 0

        # Stop takes two clicks; the second sends DELETE with the XSRF header (checked
        # by the recording API with JupyterHub's rule) and the row updates.
        stop = alpha.locator("button.stop")
        await stop.click()
        assert await stop.inner_text() == "Confirm stop"
        assert not [r for r in page_app.recorded if r["method"] == "DELETE"]
        await stop.click()
        await wait_for(
            lambda: any(r["method"] == "DELETE" for r in page_app.recorded), "the DELETE"
        )
        delete = next(r for r in page_app.recorded if r["method"] == "DELETE")
        assert delete["path"] == f"{SERVICE_PREFIX}api/hubgate/clusters/alpha"
        await alpha.locator(".badge", has_text="STOPPING").wait_for()
        assert await stop.is_disabled()
        assert await alpha.locator(".row-msg").inner_text() == ""

        # A stale action: the service's 4xx message shows in the row, the page survives.
        ghost = page.locator('tr[data-name="ghost"]')
        await ghost.locator("button.stop").click()
        await ghost.locator("button.stop").click()
        await ghost.locator(".row-msg", has_text="does not exist (any more)").wait_for()
        await ghost.wait_for(state="detached")  # gone from the next listing
        assert await alpha.count() == 1

        # Admins can scale.
        beta_count = beta.locator("input[type=number]")
        await beta_count.fill("5")
        await beta.locator("button.scale").click()
        await wait_for(
            lambda: any(r["method"] == "POST" for r in page_app.recorded), "the scale POST"
        )
        post = next(r for r in page_app.recorded if r["method"] == "POST")
        assert post["path"] == f"{SERVICE_PREFIX}api/hubgate/clusters/beta/scale"
        assert post["body"] == '{"count":5}'
        await beta.locator("td.workers", has_text="2/5").wait_for()

        gets = [r for r in page_app.recorded if r["method"] == "GET"]
        assert any(r["query"].startswith("all_users=1&status=") for r in gets)
        assert errors == []
    finally:
        await page.context.close()


async def test_clusters_page_for_a_normal_user(browser: Any, page_app: ServedApp) -> None:
    page = await new_page(browser, page_app, "alice")
    try:
        await page.goto(f"{page_app.url}{SERVICE_PREFIX}")
        await page.locator('tr[data-name="alpha"]').wait_for()
        assert await page.locator("th.owner-col").is_hidden()
        assert await page.locator("button.scale").count() == 0
        gets = [r for r in page_app.recorded if r["path"].endswith("/clusters")]
        assert gets and all("all_users" not in r["query"] for r in gets)
    finally:
        await page.context.close()
