"""Real Chromium against the real hub: the clusters page of an admin (whose hub login
carries the admin scope) scales and stops alice's cluster, while a script on the page
that changes something without the page's XSRF token is refused (issue #10, item 9)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from hubgate.tooling.hubrunner import RunningHub
from tests.browser.test_dashboard_via_hub import WAIT_MS, logged_in, wait_for_row
from tests.e2e.service_api import ServiceApi

pytestmark = pytest.mark.slow

FETCH = """async ([method, url, body, xsrf]) => {
  const headers = {"Content-Type": "application/json"};
  if (xsrf !== null) headers["X-XSRFToken"] = xsrf;
  const response = await fetch(url, {
    method, headers, credentials: "same-origin",
    body: body === null ? undefined : JSON.stringify(body),
  });
  return [response.status, await response.json()];
}"""


@pytest.fixture
async def alices(hub: RunningHub) -> AsyncIterator[str]:
    api = ServiceApi(hub)
    name = (await asyncio.to_thread(api.create_cluster, "alice"))["name"]
    try:
        await asyncio.to_thread(api.wait_running, name, "alice")
        yield name
    finally:
        await asyncio.to_thread(api.stop_and_wait, name)


async def fetch(page: Page, method: str, url: str, body: Any, xsrf: str | None) -> Any:
    return await page.evaluate(FETCH, [method, url, body, xsrf])


async def test_admin_page_changes_need_the_xsrf_token(
    hub: RunningHub, new_page: Any, alices: str
) -> None:
    api = ServiceApi(hub)
    base = f"{hub.settings.gateway_address}/"
    admin = await logged_in(new_page, hub, "admin")
    await admin.goto(base)
    row = await wait_for_row(admin, alices)
    assert "Signed in as admin (admin)" in await admin.locator("#viewer").inner_text()

    # A script on the service's origin with the admin's cookie but without the token.
    scale_url = f"{base}api/hubgate/clusters/{alices}/scale"
    for method, url, body in [
        ("POST", scale_url, {"count": 3}),
        ("POST", f"{base}api/v1/clusters/{alices}/scale", {"count": 3}),
        ("DELETE", f"{base}api/hubgate/clusters/{alices}", None),
        ("DELETE", f"{base}api/v1/clusters/{alices}", None),
    ]:
        status, data = await fetch(admin, method, url, body, None)
        assert status == 403, (method, url, status, data)
        assert data["error"].startswith(
            "Your JupyterHub login cookie was not accepted because the request has no "
            "X-XSRFToken header"
        ), data
        status, data = await fetch(admin, method, url, body, "forged")
        assert status == 403, (method, url, status, data)
        assert data["error"].startswith(
            "The XSRF token of this request does not match your JupyterHub login"
        ), data
    cluster = await asyncio.to_thread(api.cluster, alices, "alice")
    assert cluster["status"] == "RUNNING" and cluster["workers"]["requested"] == 0, cluster

    # With the page's token it works: what the page's own buttons send.
    xsrf = await admin.locator('meta[name="hubgate-xsrf"]').get_attribute("content")
    status, data = await fetch(admin, "POST", scale_url, {"count": 0}, xsrf)
    assert status == 200 and data["ok"] is True, data

    await row.locator("input").fill("1")
    await row.locator("button.scale").click()
    await expect(row.locator("td.workers")).to_have_text(re.compile(r"/1\b"), timeout=WAIT_MS)
    assert await row.locator(".row-msg").inner_text() == ""
    cluster = await asyncio.to_thread(api.cluster, alices, "alice")
    assert cluster["workers"]["requested"] == 1, cluster

    stop = row.locator("button.stop")
    await stop.click()
    await stop.click()
    await expect(row.locator(".badge")).to_have_text(
        re.compile(r"^(STOPPING|STOPPED)$"), timeout=WAIT_MS
    )
    stopped = await asyncio.to_thread(
        api.wait_for_cluster, alices, "alice", lambda c: c["status"] == "STOPPED", "stopped"
    )
    assert any(e["message"] == "stopped by admin" for e in stopped["events"]), stopped
