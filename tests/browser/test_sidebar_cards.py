"""The sidebar's cards in a real JupyterLab under a real hub, in Chromium: names, start-up
progress, every dashboard plot (search, open, drag), the usual sidebar widths, the
keyboard and the dark theme. Screenshots go to docs/screenshots/sidebar-*.png."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, Route, expect

from hubgate.tooling.hubrunner import RunningHub
from tests.browser.test_sidebar import SCREENSHOTS, START_MS, card, open_lab, open_sidebar
from tests.e2e.service_api import ServiceApi

pytestmark = pytest.mark.slow

WIDTHS = (250, 350, 500)

# Every visible control and label of the panel: inside the panel and its card, no
# button or link text over two lines, none cut off (titles end in an ellipsis on
# purpose, inputs scroll their text).
LAYOUT_PROBLEMS = """panel => {
  const problems = [];
  const visible = el => el.getClientRects().length > 0;
  const describe = el => `${el.className} "${(el.textContent || el.getAttribute('aria-label') || '').trim()}"`;
  const inside = (r, box) => r.left >= box.left - 0.5 && r.right <= box.right + 0.5;
  if (panel.scrollWidth > panel.clientWidth) {
    problems.push(`the panel scrolls sideways (${panel.scrollWidth} > ${panel.clientWidth})`);
  }
  const panelBox = panel.getBoundingClientRect();
  const controls = 'button, a, input, .hubgate-ClusterCard-status, .hubgate-ClusterCard-stat b';
  for (const el of panel.querySelectorAll(controls)) {
    if (!visible(el)) continue;
    const box = el.getBoundingClientRect();
    if (!inside(box, panelBox)) problems.push(`outside the panel: ${describe(el)}`);
    const cardNode = el.closest('.hubgate-ClusterCard');
    if (cardNode && !inside(box, cardNode.getBoundingClientRect())) {
      problems.push(`outside its card: ${describe(el)}`);
    }
    if (el.tagName !== 'INPUT' && el.scrollWidth > el.clientWidth) {
      problems.push(`text cut off (${el.scrollWidth} > ${el.clientWidth}): ${describe(el)}`);
    }
    if (el.matches('button, a')) {
      const range = document.createRange();
      range.selectNodeContents(el);
      const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
      if (lines.size > 1) problems.push(`wraps over ${lines.size} lines: ${describe(el)}`);
    }
  }
  return problems;
}"""

# The colours every visible element of the panel is drawn with, and the colours of the
# theme's --jp-* variables (resolved by the browser).
COLOURS = """panel => {
  const names = new Set();
  for (const sheet of document.styleSheets) {
    let rules;
    try { rules = sheet.cssRules; } catch { continue; }
    for (const rule of rules) {
      if (!rule.style) continue;
      for (const name of rule.style) if (name.startsWith('--jp-')) names.add(name);
    }
  }
  const probe = document.createElement('div');
  document.body.appendChild(probe);
  const theme = new Set(['rgba(0, 0, 0, 0)']);
  for (const name of names) {
    probe.style.color = '';
    probe.style.color = `var(${name})`;
    const value = getComputedStyle(probe).color;
    if (probe.style.color) theme.add(value);
  }
  probe.remove();
  const used = [];
  for (const el of [panel, ...panel.querySelectorAll('*')]) {
    if (!el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    const what = `${el.tagName.toLowerCase()}.${el.className}`;
    used.push([what, 'color', style.color]);
    used.push([what, 'background', style.backgroundColor]);
    if (parseFloat(style.borderTopWidth) > 0 && style.borderTopStyle !== 'none') {
      used.push([what, 'border', style.borderTopColor]);
    }
  }
  return {theme: [...theme], used, background: getComputedStyle(panel).backgroundColor};
}"""

TABBABLE = """node => [...node.querySelectorAll('button, a[href], input')]
  .filter(el => el.getClientRects().length > 0 && !el.disabled)"""


def luminance(rgb: str) -> float:
    red, green, blue = (int(x) for x in re.findall(r"\d+", rgb)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


async def set_sidebar_width(page: Page, width: int) -> None:
    """Drag the handle between the left sidebar and the main area."""
    panel = page.locator("#hubgate-clusters")
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = await handle.bounding_box()
    now = await panel.bounding_box()
    assert box and now
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + (width - now["width"]), y, steps=8)
    await page.mouse.up()
    await page.wait_for_function(
        "w => Math.round(document.querySelector('#hubgate-clusters')"
        ".getBoundingClientRect().width) === w",
        arg=width,
    )


async def switch_theme(page: Page, theme: str, light: bool) -> None:
    await page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Settings$")).click()
    await page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
    await page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{theme}$")).click()
    await expect(page.locator("body")).to_have_attribute(
        "data-jp-theme-light", "true" if light else "false"
    )


async def create_from_form(panel: Any, name: str) -> Any:
    await panel.locator(".hubgate-NewCluster").click()
    form = panel.locator(".hubgate-ClusterPanel-form")
    await form.locator(".hubgate-OptionsForm").wait_for()
    await form.locator("input.hubgate-ClusterName").fill(name)
    return form


@pytest.fixture
def api(hub: RunningHub) -> ServiceApi:
    return ServiceApi(hub)


@pytest.fixture
async def made(api: ServiceApi) -> AsyncIterator[list[str]]:
    """Ids of the clusters a test made, stopped afterwards whatever happened."""
    ids: list[str] = []
    yield ids
    for cluster_id in ids:
        await asyncio.to_thread(api.stop_and_wait, cluster_id)


async def test_named_cluster_plots_widths_keyboard_and_dark_theme(
    hub: RunningHub, new_page: Any, api: ServiceApi, made: list[str]
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = await open_lab(new_page, hub, "alice")
    panel = await open_sidebar(page)
    before = set(await card(page).evaluate_all("cards => cards.map(c => c.dataset.cluster)"))
    name = f"cards-{secrets.token_hex(3)}"

    # The Name field checks the service's rule as it is typed.
    form = await create_from_form(panel, "My Analysis")
    name_error = form.locator(".hubgate-NameField .hubgate-OptionsForm-error")
    await expect(name_error).to_have_text(re.compile("^Use lowercase letters"))
    await expect(panel.locator(".hubgate-CreateCluster")).to_be_disabled()
    await form.locator("input.hubgate-ClusterName").fill(name)
    await expect(name_error).to_have_text("")
    await panel.locator(".hubgate-CreateCluster").click()
    await expect(form).to_be_hidden(timeout=60_000)
    await expect(card(page)).to_have_count(len(before) + 1, timeout=60_000)
    ids = await card(page).evaluate_all("cards => cards.map(c => c.dataset.cluster)")
    [cluster_id] = [i for i in ids if i not in before]
    made.append(cluster_id)
    named = card(page, cluster_id)

    # Its card is titled with the name; the id is small, in full in its tooltip.
    await expect(named.locator(".hubgate-ClusterCard-title")).to_have_text(name)
    cluster_id_label = named.locator(".hubgate-ClusterCard-id")
    await expect(cluster_id_label).to_have_text(cluster_id[:8])
    await expect(cluster_id_label).to_have_attribute("title", f"Cluster id {cluster_id}")

    # The same name again: the service's 409 shows under the Name field.
    form = await create_from_form(panel, name)
    await panel.locator(".hubgate-CreateCluster").click()
    await expect(name_error).to_contain_text(f"'{name}'")
    await expect(form.locator("input.hubgate-ClusterName")).to_have_attribute(
        "aria-invalid", "true"
    )
    await expect(form.locator(".hubgate-OptionsForm-submitError")).to_have_text("")
    await panel.locator(".hubgate-CancelCluster").click()
    await expect(card(page)).to_have_count(len(before) + 1)

    await expect(named).to_have_attribute("data-status", "RUNNING", timeout=START_MS)
    await named.locator('input[aria-label="Workers"]').fill("1")
    await named.locator('input[aria-label="Workers"]').press("Enter")  # Enter scales
    await expect(named.locator('[data-stat="workers"] b')).to_have_text("1", timeout=START_MS)
    await expect(named.locator(".hubgate-Progress")).to_be_hidden()

    # The plots API: the owner gets the scheduler's list; another user does not.
    listed = await asyncio.to_thread(
        api.ok, "GET", f"/api/hubgate/clusters/{cluster_id}/plots", user="alice"
    )
    paths = {plot["path"] for plot in listed["plots"]}
    assert {"individual-task-stream", "individual-workers-memory"} <= paths, paths
    assert len(paths) > 10, paths
    refused = await asyncio.to_thread(
        api.request, "GET", f"/api/hubgate/clusters/{cluster_id}/plots", user="bob"
    )
    assert refused.status == 403, refused.text
    assert "lacks permissions" in refused.error

    # Every plot, from the keyboard: "All plots" opens the list with the search focused.
    all_plots = named.locator(".hubgate-AllPlots")
    await all_plots.focus()
    await page.keyboard.press("Enter")
    await expect(all_plots).to_have_attribute("aria-expanded", "true")
    search = named.locator(".hubgate-PlotList-filter")
    await expect(search).to_be_focused()
    items = named.locator(".hubgate-PlotList-item")
    await expect(items).to_have_count(len(paths))
    await expect(named.locator(".hubgate-PlotList-count")).to_have_text(f"{len(paths)} plots")
    await page.keyboard.type("memory")
    shown = await items.all_inner_texts()
    assert shown and all("memory" in text.lower() for text in shown), shown
    assert len(shown) < len(paths)
    await expect(named.locator(".hubgate-PlotList-count")).to_have_text(
        f"{len(shown)} of {len(paths)} plots"
    )
    await page.keyboard.type(" workers")
    await expect(items.first).to_have_text("Workers Memory")  # sorted by title
    narrowed = await items.all_inner_texts()
    assert len(narrowed) < len(shown), narrowed
    assert all({"workers", "memory"} <= set(t.lower().split()) for t in narrowed), narrowed
    await page.keyboard.press("ArrowDown")
    await expect(items.first).to_be_focused()
    await page.keyboard.press(" ")  # Space opens it as a pane
    memory_pane = page.locator(f"#hubgate-dashboard-{cluster_id}-individual-workers-memory")
    await expect(memory_pane).to_be_visible()
    tab = page.locator(
        f'.lm-TabBar-tab[data-id="hubgate-dashboard-{cluster_id}-individual-workers-memory"]'
    )
    await expect(tab).to_have_class(re.compile(r"\bjp-mod-current\b"))
    await expect(tab).to_contain_text(f"Workers Memory ({name})")
    frame = page.frame_locator(f"#hubgate-dashboard-{cluster_id}-individual-workers-memory iframe")
    await frame.locator(".bk-Canvas").first.wait_for(state="attached", timeout=120_000)
    panes = [
        f.url for f in page.frames if f"/clusters/{cluster_id}/individual-workers-memory" in f.url
    ]
    assert panes and panes[0].startswith(hub.settings.dashboard_origin(cluster_id) + "/"), panes

    # Escape clears the search; a plot dragged into the main area becomes a pane there.
    await search.focus()
    await page.keyboard.press("Escape")
    await expect(items).to_have_count(len(paths))
    dragged = items.filter(has_text=re.compile("^Task Stream$"))
    await dragged.scroll_into_view_if_needed()
    start = await dragged.bounding_box()
    target = await memory_pane.bounding_box()  # dropped on it: a tab beside it
    assert start and target
    await page.mouse.move(start["x"] + 20, start["y"] + start["height"] / 2)
    await page.mouse.down()
    await page.mouse.move(start["x"] + 40, start["y"] + start["height"] / 2, steps=4)
    await page.mouse.move(
        target["x"] + target["width"] * 0.5, target["y"] + target["height"] * 0.5, steps=12
    )
    await page.mouse.up()
    stream_pane = page.locator(f"#hubgate-dashboard-{cluster_id}-individual-task-stream")
    await expect(stream_pane).to_be_visible()
    await expect(stream_pane.locator("iframe")).to_have_attribute(
        "src", re.compile(rf"/clusters/{cluster_id}/individual-task-stream$")
    )

    # Keyboard: Tab visits the card's controls in order, each with a name to read.
    await search.fill("stream")
    controls = await named.evaluate_handle(TABBABLE)
    count = await controls.evaluate("list => list.length")
    unnamed = await controls.evaluate(
        """list => list.filter(el => !(el.getAttribute('aria-label') || el.textContent.trim()
            || (el.labels && el.labels.length))).map(el => el.outerHTML)"""
    )
    assert unnamed == []
    await controls.evaluate("list => list[0].focus()")
    for index in range(1, count):
        await page.keyboard.press("Tab")
        reached = await controls.evaluate(
            "(list, i) => document.activeElement === list[i] ? null"
            " : [list[i].outerHTML, document.activeElement.outerHTML.slice(0, 300)]",
            index,
        )
        assert reached is None, (f"Tab did not reach control {index} of the card", reached)
    # The list refreshes (every 2 s) without taking the focus away.
    await all_plots.focus()
    for _ in range(2):
        async with page.expect_response(lambda r: "/hubgate/clusters?status=" in r.url):
            pass
    await expect(all_plots).to_be_focused()
    await page.keyboard.press(" ")  # Space closes the list again
    await expect(all_plots).to_have_attribute("aria-expanded", "false")
    await expect(named.locator(".hubgate-ClusterCard-allPlots")).to_be_hidden()

    # The usual sidebar widths: nothing wraps, overflows or leaves its card; the plot
    # list is open so that its items are measured too.
    await all_plots.click()
    await search.fill("")
    for width in WIDTHS:
        await set_sidebar_width(page, width)
        problems = await panel.evaluate(LAYOUT_PROBLEMS)
        assert problems == [], (width, problems)
        link = named.locator(".hubgate-DashboardLink")
        assert (await link.bounding_box() or {}).get("height", 99) < 30
        await panel.screenshot(path=str(SCREENSHOTS / f"sidebar-{width}.png"))

    # The dark theme: every colour in the panel comes from the theme's variables.
    await set_sidebar_width(page, 350)
    try:
        await switch_theme(page, "JupyterLab Dark", light=False)
        colours = await panel.evaluate(COLOURS)
        theme = set(colours["theme"])
        foreign = [entry for entry in colours["used"] if entry[2] not in theme]
        assert foreign == [], foreign[:20]
        assert luminance(colours["background"]) < 0.3, colours["background"]
        problems = await panel.evaluate(LAYOUT_PROBLEMS)
        assert problems == [], problems
        await panel.screenshot(path=str(SCREENSHOTS / "sidebar-dark.png"))
    finally:
        await switch_theme(page, "JupyterLab Light", light=True)

    # A stopped cluster has no plots to list: a 409 that says so.
    await asyncio.to_thread(api.stop_and_wait, cluster_id, "alice")
    stopped = await asyncio.to_thread(
        api.request, "GET", f"/api/hubgate/clusters/{cluster_id}/plots", user="alice"
    )
    assert stopped.status == 409, stopped.text
    assert "only a running cluster has dashboard plots" in stopped.error


def fake_cluster(status: str, running: int, pending: int, requested: int) -> dict[str, Any]:
    cluster_id = "f00d" * 8
    return {
        "name": cluster_id,
        "display_name": "warming-up",
        "owner": "alice",
        "status": status,
        "reason": None,
        "options": {},
        "created": "2026-12-01T03:00:00+00:00",
        "started": None,
        "stopped": None,
        "workers": {"requested": requested, "running": running, "pending": pending},
        "adaptive": {"active": False, "minimum": None, "maximum": None},
        "threads": running,
        "memory": running * 2**30,
        "cores": running + pending,
        "dashboard_url": (
            f"/services/dask-gateway/clusters/{cluster_id}/status" if status == "RUNNING" else None
        ),
        "scheduler_address": None,
        "idle_since": None,
        "lease_expires": None,
        "events": [
            {"time": "2026-12-01T03:00:00+00:00", "message": "Cluster submitted"},
            {"time": "2026-12-01T03:00:01+00:00", "message": "Starting the scheduler process"},
        ],
    }


async def test_progress_follows_the_start_live(hub: RunningHub, new_page: Any) -> None:
    """The sidebar's list, answered by the test so that each stage of a start is seen
    (a real start on this machine may pass a stage between two refreshes)."""
    page = await open_lab(new_page, hub, "alice")
    stage = {"cluster": fake_cluster("PENDING", 0, 0, 3)}

    async def answer(route: Route) -> None:
        body = json.dumps({"clusters": [stage["cluster"]]})
        await route.fulfill(status=200, content_type="application/json", body=body)

    await page.route(re.compile(r"/hubgate/clusters\?status="), answer)
    await open_sidebar(page)
    warming = card(page, "f00d" * 8)
    progress = warming.locator(".hubgate-Progress")
    bar = progress.locator('[role="progressbar"]')
    await expect(warming.locator(".hubgate-ClusterCard-title")).to_have_text("warming-up")
    await expect(progress).to_have_attribute("data-phase", "scheduler")
    await expect(progress.locator(".hubgate-Progress-step")).to_have_text(
        "Starting the scheduler process"
    )
    await expect(progress.locator(".hubgate-Progress-summary")).to_have_text(
        "Starting the scheduler; 3 workers will follow"
    )

    stage["cluster"] = fake_cluster("RUNNING", 0, 1, 3)
    await expect(progress).to_have_attribute("data-phase", "workers")
    await expect(progress.locator(".hubgate-Progress-step")).to_have_text("Scheduler running")
    await expect(bar).to_have_attribute(
        "aria-valuetext", "0 of 3 workers running, 1 starting, 2 waiting"
    )
    await expect(bar).to_have_attribute("aria-valuemax", "3")

    stage["cluster"] = fake_cluster("RUNNING", 2, 1, 3)
    await expect(bar).to_have_attribute("aria-valuenow", "2")
    await expect(progress.locator(".hubgate-Progress-summary")).to_have_text(
        "2 of 3 workers running, 1 starting"
    )
    # Shares of the requested workers (set as widths; the bar animates towards them).
    widths = await bar.evaluate("bar => [...bar.children].map(c => parseFloat(c.style.width))")
    assert [round(w) for w in widths] == [67, 33], widths
    await warming.screenshot(path=str(SCREENSHOTS / "sidebar-progress.png"))

    stage["cluster"] = fake_cluster("RUNNING", 3, 0, 3)
    await expect(progress).to_be_hidden()
    await expect(warming.locator('[data-stat="workers"] b')).to_have_text("3")
