"""A hostile dashboard gets nothing from an admin's browser.

Bob controls his scheduler, so he can make it serve any page under his dashboard. His
page tries what a script on the service's origin could do with an admin's session:
read the service's API (everyone's clusters, alice's cluster), read and plant cookies,
read alice's dashboard, which the admin also has open. An admin opens bob's page in
real Chromium through the real hub: the script runs, on bob's cluster's own origin,
and gets none of it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.service_api import ServiceApi
from tests.fixtures.browser import hub_login
from tests.fixtures.hub import gateway_env, run_python

pytestmark = pytest.mark.slow

# Bob's page: each attempt's outcome goes into window.hubgateReport.
EVIL_PAGE = """<!doctype html><html><head><title>loading</title></head><body><script>
(async () => {
  const report = {cookie_before: document.cookie};
  // What a script on the service's origin would do: take the XSRF token from the
  // clusters page (or the _xsrf cookie) and call the API as the page does.
  let xsrf = decodeURIComponent((document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || "");
  try {
    const page = await (await fetch(SERVICE + "/", {credentials: "include"})).text();
    xsrf = (page.match(/name="hubgate-xsrf" content="([^"]*)"/) || [])[1] || xsrf;
  } catch (e) {
    report.clusters_page = "failed: " + e;
  }
  report.xsrf = xsrf;
  const attempt = async (key, url) => {
    try {
      const r = await fetch(url, {credentials: "include", headers: {"X-XSRFToken": xsrf}});
      report[key] = {status: r.status, body: (await r.text()).slice(0, 4000)};
    } catch (e) {
      report[key] = "failed: " + e;
    }
  };
  await attempt("hubgate_api", SERVICE + "/api/hubgate/clusters");
  await attempt("v1_api", SERVICE + "/api/v1/clusters/" + ALICE);
  await attempt("alice_dashboard", ALICE_DASHBOARD);
  document.cookie = "planted=1; path=/";
  document.cookie = "planted_parent=1; domain=localhost; path=/";
  window.hubgateReport = report;
  document.title = "ran";
})();
</script></body></html>"""

# Run as bob: serve that page from his scheduler, under his dashboard's prefix, with
# cookies of its own.
REGISTER = """
from dask_gateway import Gateway

def register(dask_scheduler, page, path):
    from tornado import web

    class Evil(web.RequestHandler):
        def get(self):
            self.add_header("Set-Cookie", "from_scheduler=1; Path=/")
            self.add_header("Set-Cookie", "from_scheduler_parent=1; Domain=localhost; Path=/")
            self.finish(page)

    dask_scheduler.http_application.add_handlers(r".*", [(path, Evil)])
    return "registered"

cluster = Gateway().connect({name!r})
client = cluster.get_client(set_as_default=False)
print(client.run_on_scheduler(register, page={page!r}, path={path!r}))
"""


@pytest.fixture
async def clusters(hub: RunningHub) -> AsyncIterator[dict[str, str]]:
    api = ServiceApi(hub)
    names: dict[str, str] = {}

    def start() -> None:
        for user in ("alice", "bob"):
            names[user] = api.create_cluster(user)["name"]
        for user in ("alice", "bob"):
            api.wait_running(names[user], user)

    try:
        await asyncio.to_thread(start)
        yield names
    finally:
        for name in names.values():
            await asyncio.to_thread(api.stop_and_wait, name)


async def open_as_admin(page: Page, url: str, lands_on: str) -> None:
    """Through the admin's confirmation page to the dashboard origin."""
    await page.goto(url)
    async with page.expect_navigation(url=lands_on):
        await page.locator("#open-dashboard").click()


async def test_admin_opening_a_hostile_dashboard(
    hub: RunningHub, new_page: Any, clusters: dict[str, str], tmp_path: Path
) -> None:
    alice, bob = clusters["alice"], clusters["bob"]
    gateway = hub.settings.gateway_address
    alice_dashboard = f"{hub.settings.dashboard_origin(alice)}/clusters/{alice}/status"
    page_html = (
        EVIL_PAGE.replace("SERVICE", json.dumps(gateway))
        .replace("ALICE_DASHBOARD", json.dumps(alice_dashboard))
        .replace("ALICE", json.dumps(alice))
    )
    code = REGISTER.format(name=bob, page=page_html, path=f"/clusters/{bob}/evil")
    out = await asyncio.to_thread(run_python, code, gateway_env(hub, "bob"), tmp_path)
    assert "registered" in out

    admin = await new_page()
    await hub_login(admin, hub.settings.hub_url, "admin", hub.settings.password)
    # The admin has alice's dashboard open too: a session bob's page would like to use.
    await open_as_admin(admin, f"{gateway}/clusters/{alice}/status", alice_dashboard)
    await admin.locator(".bk-Canvas").first.wait_for(state="visible")

    evil_url = f"{hub.settings.dashboard_origin(bob)}/clusters/{bob}/evil"
    responses: list[Any] = []
    admin.on("response", lambda r: responses.append(r) if r.url == evil_url else None)
    await open_as_admin(admin, f"{gateway}/clusters/{bob}/evil", evil_url)
    await admin.wait_for_function("document.title === 'ran'")
    report = await admin.evaluate("window.hubgateReport")

    # The script ran, on bob's cluster's origin, and got nothing.
    assert report is not None
    leaked = json.dumps(report)
    assert alice not in leaked and '"owner"' not in leaked, report
    for attempt in ("hubgate_api", "v1_api", "alice_dashboard"):
        outcome = report[attempt]
        assert isinstance(outcome, str) or outcome["status"] != 200, (attempt, outcome)
    assert report["cookie_before"] == "" and report["xsrf"] == ""

    # The scheduler's cookies never reached the browser, and nothing was planted where
    # the hub or the service would read it, nor on alice's dashboard.
    headers = await responses[0].all_headers()
    assert "set-cookie" not in headers
    assert "frame-ancestors" in headers["content-security-policy"]
    context = admin.context
    for url in (hub.settings.hub_url, gateway, alice_dashboard):
        names = {c["name"] for c in await context.cookies(url)}
        assert not names & {"planted", "planted_parent", "from_scheduler"}, (url, names)
    every = {c["name"] for c in await context.cookies()}
    assert not every & {"from_scheduler", "from_scheduler_parent", "planted_parent"}, every
