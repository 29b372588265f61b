"""The "Dask clusters" sidebar in a real JupyterLab, under a real hub, in Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.fixtures.browser import hub_login

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
START_MS = 240_000  # a cluster start on a loaded 2-core machine
VIEWPORT = {"width": 1400, "height": 900}


async def open_lab(new_page: Any, hub: Any, user: str) -> Page:
    page = await new_page(viewport=VIEWPORT)
    # /hub/spawn starts the server if needed, then lands on its default URL (/lab).
    await hub_login(page, hub.settings.hub_url, user, hub.settings.password, next_path="/hub/spawn")
    await page.locator(".jp-LabShell").wait_for(timeout=180_000)
    # A fresh layout (an earlier test's workspace would restore its panels and tabs).
    await page.goto(f"{hub.settings.hub_url}/user/{user}/lab?reset")
    await page.locator(".jp-LabShell").wait_for(timeout=180_000)
    return page


async def open_sidebar(page: Page) -> Any:
    tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="hubgate-clusters"]')
    await tab.wait_for()
    panel = page.locator("#hubgate-clusters")
    await tab.click()
    await expect(panel).to_be_visible()
    # The first listing has arrived once the empty note or a card is shown.
    await page.locator(".hubgate-ClusterPanel-empty, .hubgate-ClusterCard").first.wait_for()
    return panel


async def open_notebook(page: Page) -> Any:
    await page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    notebook = page.locator(".jp-NotebookPanel").last
    await notebook.locator(".jp-Cell .cm-content").first.wait_for()
    # Cells run before the kernel is up are not executed: wait for it.
    await expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=180_000)
    return notebook


async def run_cell(page: Page, notebook: Any, code: str | None = None) -> Any:
    """Run the active cell (after typing ``code`` into it); return its output area."""
    index = await notebook.locator(".jp-Cell").evaluate_all(
        "cells => cells.findIndex(c => c.classList.contains('jp-mod-active'))"
    )
    cell = notebook.locator(".jp-Cell").nth(index)  # pinned: running moves the active cell
    await cell.locator(".cm-content").click()
    if code is not None:
        await page.keyboard.insert_text(code)
    await page.keyboard.press("Shift+Enter")
    await expect(cell.locator(".jp-InputPrompt")).to_have_text(
        re.compile(r"\[\d+\]"), timeout=START_MS
    )
    return cell.locator(".jp-OutputArea")


# In the kernel: the cluster widget's refresh loop, once it has refreshed twice.
AWAIT_REFRESHES = """import time
from hubgate.widgets import refresh
[refresh_loop] = refresh.running()
deadline = time.monotonic() + 60
while refresh_loop.fetches < 2 and time.monotonic() < deadline: time.sleep(0.1)
print("REFRESHING", len(refresh.running()), refresh_loop.fetches >= 2)"""
# The kernel handles the frontend's view-count message before this cell.
AFTER_CLEAR = "print('STOPPED', refresh_loop.stopped.wait(60), len(refresh.running()))"


async def clear_output(page: Page, cell: Any) -> None:
    """The cell's context menu, "Clear Cell Output"."""
    await cell.locator(".jp-InputArea-prompt").click(button="right")
    await page.locator('.lm-Menu-item[data-command="notebook:clear-cell-output"]').click()


def card(page: Page, name: str | None = None, status: str | None = None) -> Any:
    selector = ".hubgate-ClusterCard"
    if name:
        selector += f'[data-cluster="{name}"]'
    if status:
        selector += f'[data-status="{status}"]'
    return page.locator(selector)


async def test_create_scale_dashboard_insert_code_and_shutdown(hub: Any, new_page: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = await open_lab(new_page, hub, "alice")
    panel = await open_sidebar(page)
    before = set(await card(page).evaluate_all("cards => cards.map(c => c.dataset.cluster)"))

    # The options form, from the service's spec, rejects a bad value inline.
    await panel.locator(".hubgate-NewCluster").click()
    form = panel.locator(".hubgate-OptionsForm")
    await form.wait_for()
    cores = form.locator('input[data-field="worker_cores"]')
    await cores.fill("99")
    error = form.locator(
        '.hubgate-OptionsForm-row:has(input[data-field="worker_cores"]) .hubgate-OptionsForm-error'
    )
    await expect(error).to_have_text(re.compile(r"^worker_cores must be at most \d+, got 99$"))
    create = panel.locator(".hubgate-CreateCluster")
    await expect(create).to_be_disabled()
    await panel.locator(".hubgate-ClusterPanel-form").screenshot(
        path=str(SCREENSHOTS / "options-form-invalid.png")
    )
    await cores.fill("1")
    await expect(error).to_have_text("")
    await expect(create).to_be_enabled()
    await panel.locator(".hubgate-ClusterPanel-form").screenshot(
        path=str(SCREENSHOTS / "options-form.png")
    )
    await create.click()
    await expect(panel.locator(".hubgate-ClusterPanel-form")).to_be_hidden(timeout=60_000)

    # The new card goes RUNNING.
    await expect(card(page)).to_have_count(len(before) + 1, timeout=60_000)
    names = await card(page).evaluate_all("cards => cards.map(c => c.dataset.cluster)")
    [name] = [n for n in names if n not in before]
    new_card = card(page, name)
    await expect(new_card).to_have_attribute("data-status", "RUNNING", timeout=START_MS)

    # Scale to 2 and see 2 workers.
    await new_card.locator('input[aria-label="Workers"]').fill("2")
    await new_card.locator(".hubgate-Scale").click()
    workers = new_card.locator('[data-stat="workers"] b')
    await expect(workers).to_have_text("2", timeout=START_MS)
    await expect(new_card.locator('[data-stat="threads"] b')).not_to_have_text("0")
    await panel.screenshot(path=str(SCREENSHOTS / "sidebar.png"))

    # A dashboard plot opens as a main-area pane and renders.
    await new_card.locator('.hubgate-Plot[data-plot="individual-task-stream"]').click()
    frame = page.frame_locator(".hubgate-DashboardFrame iframe").first
    await frame.locator(".bk-Canvas").first.wait_for(state="attached", timeout=120_000)
    # The pane shows the plot from the cluster's own origin, not the hub's.
    panes = [f.url for f in page.frames if f"/clusters/{name}/individual-task-stream" in f.url]
    assert panes and panes[0].startswith(hub.settings.dashboard_origin(name) + "/"), panes
    link = new_card.locator(".hubgate-DashboardLink")
    await expect(link).to_have_attribute("href", re.compile(rf"/clusters/{name}/status$"))

    # Insert code into a notebook and run it.
    notebook = await open_notebook(page)
    await new_card.locator(".hubgate-InsertCode").click()
    source = notebook.locator(".jp-Cell.jp-mod-active .cm-content")
    await expect(source).to_contain_text(f'Gateway().connect("{name}")')
    output = await run_cell(page, notebook)
    await expect(output).to_contain_text("Client", timeout=START_MS)
    await expect(output).not_to_contain_text("Traceback")

    # The cluster widget in the notebook.
    widget_output = await run_cell(page, notebook, "cluster")
    widget = widget_output.locator(".widget-vbox").first
    await expect(widget).to_contain_text("RUNNING", timeout=60_000)
    await widget.screenshot(path=str(SCREENSHOTS / "cluster-widget.png"))
    # It refreshes through one loop in the kernel while shown (the frontend counts its
    # views); clearing the output removes the view, which stops the loop.
    widget_cell = notebook.locator(".jp-Cell").filter(has=page.locator(".widget-vbox"))
    refreshing = await run_cell(page, notebook, AWAIT_REFRESHES)
    await expect(refreshing).to_contain_text("REFRESHING 1 True", timeout=90_000)
    await clear_output(page, widget_cell)
    await expect(notebook.locator(".widget-vbox")).to_have_count(0)
    await notebook.locator(".jp-Cell").last.locator(".cm-content").click()
    stopped = await run_cell(page, notebook, AFTER_CLEAR)
    await expect(stopped).to_contain_text("STOPPED True 0", timeout=90_000)

    # Shut it down from the sidebar: it leaves the list.
    await new_card.locator(".hubgate-Shutdown").click()
    await expect(card(page, name)).to_have_count(0, timeout=START_MS)


async def test_notebook_cluster_appears_for_its_owner_only(hub: Any, new_page: Any) -> None:
    alice = await open_lab(new_page, hub, "alice")
    await open_sidebar(alice)
    notebook = await open_notebook(alice)
    output = await run_cell(
        alice,
        notebook,
        "from hubgate import Gateway\n"
        "made = Gateway().new_cluster(shutdown_on_close=False)\n"
        "print('NAME=' + made.name)",
    )
    await expect(output).to_contain_text("NAME=", timeout=START_MS)
    name = re.search(r"NAME=(\w+)", await output.inner_text()).group(1)
    try:
        await expect(card(alice, name)).to_have_count(1, timeout=60_000)

        bob = await open_lab(new_page, hub, "bob")
        await open_sidebar(bob)
        # Bob's panel lists clusters successfully, several times, never alice's.
        await expect(bob.locator(".hubgate-ClusterPanel-message")).to_have_text("")
        for _ in range(3):
            async with bob.expect_response(
                lambda r: "/hubgate/clusters" in r.url and r.status == 200, timeout=60_000
            ):
                pass
            await expect(card(bob, name)).to_have_count(0)
        owners = await card(bob).evaluate_all("cards => cards.map(c => c.dataset.cluster)")
        assert name not in owners
    finally:
        await run_cell(alice, notebook, "made.shutdown()")
    await expect(card(alice, name)).to_have_count(0, timeout=START_MS)
