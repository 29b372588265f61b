"""Real Chromium against the real hub: the clusters page shows each cluster's display
name, and every cell lines up with its column's header and fills its row. The Actions
cell did not: it was a flex box, not a table cell, so a row taller than its buttons (a
stopped cluster's reason under its status) drew the Actions cell's border above the
row's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Locator, Page

from hubgate.tooling.hubrunner import RunningHub
from tests.browser.test_dashboard_via_hub import logged_in, wait_for_row
from tests.e2e.service_api import ServiceApi

pytestmark = pytest.mark.slow

# Cells of one table share their column's and their row's edges exactly; a misplaced
# cell is off by whole pixels.
TOLERANCE_PX = 0.1


@pytest.fixture
async def named_clusters(hub: RunningHub) -> AsyncIterator[dict[str, str]]:
    """alice's "my-analysis", bob's cluster with a default name and bob's stopped
    "finished-run" (its reason makes its row taller): id -> display name, in that order."""
    api = ServiceApi(hub)
    made: dict[str, str] = {}

    def start() -> None:
        for user, body in (
            ("alice", {"display_name": "my-analysis"}),
            ("bob", {}),
            ("bob", {"display_name": "finished-run"}),
        ):
            cluster = api.ok("POST", "/api/hubgate/clusters", body, user=user)
            made[cluster["name"]] = cluster["display_name"]
            api.wait_running(cluster["name"], user)
        api.stop_and_wait(list(made)[-1])

    try:
        await asyncio.to_thread(start)
        yield made
    finally:
        for name in made:
            await asyncio.to_thread(api.stop_and_wait, name)


async def boxes(cells: Locator) -> list[dict[str, float] | None]:
    """Each cell's bounding box (None: not displayed)."""
    return [await cells.nth(i).bounding_box() for i in range(await cells.count())]


async def assert_columns_line_up(page: Page) -> None:
    """Each shown cell of every row has its header's x and width, and its row's y and
    height."""
    header = await boxes(page.locator("#clusters thead th"))
    body = page.locator("#clusters tbody tr")
    rows = await body.count()
    shown = [i for i, box in enumerate(header) if box is not None]
    assert len(shown) >= 10, header
    for r in range(rows):
        row = body.nth(r)
        row_box = await row.bounding_box()
        assert row_box is not None
        cells = await boxes(row.locator("td"))
        assert len(cells) == len(header), (len(cells), len(header))
        for i, (head, cell) in enumerate(zip(header, cells, strict=True)):
            label = await page.locator("#clusters thead th").nth(i).inner_text()
            if head is None:
                assert cell is None, f"column {label!r}: hidden in the header, not in row {r}"
                continue
            assert cell is not None, f"column {label!r}: shown in the header, not in row {r}"
            for edge in ("x", "width"):
                assert abs(cell[edge] - head[edge]) <= TOLERANCE_PX, (
                    f"column {label!r}, row {r}: cell {edge} {cell[edge]} vs header {head[edge]}"
                )
            for edge in ("y", "height"):
                assert abs(cell[edge] - row_box[edge]) <= TOLERANCE_PX, (
                    f"column {label!r}, row {r}: cell {edge} {cell[edge]} vs row {row_box[edge]}"
                )


async def names_shown(page: Page) -> dict[str, str]:
    rows = page.locator("#clusters tbody tr")
    return {
        await rows.nth(i).get_attribute("data-name") or "": await rows.nth(i)
        .locator("td.display-name")
        .inner_text()
        for i in range(await rows.count())
    }


async def test_clusters_page_shows_names_in_aligned_columns(
    hub: RunningHub, new_page: Any, named_clusters: dict[str, str]
) -> None:
    alices, bobs, stopped = list(named_clusters)
    page_url = f"{hub.settings.gateway_address}/"

    admin = await logged_in(new_page, hub, "admin")
    await admin.goto(page_url)
    for name in named_clusters:
        await wait_for_row(admin, name)
    headers = await admin.locator("#clusters thead th").all_inner_texts()
    assert headers[:3] == ["Name", "Cluster id", "Owner"], headers
    # (other tests' clusters may be listed too: stopped ones stay for a while)
    shown = await names_shown(admin)
    assert {name: shown.get(name) for name in named_clusters} == named_clusters
    assert await admin.locator(f'tr[data-name="{alices}"] td.name').inner_text() == alices
    reason = admin.locator(f'tr[data-name="{stopped}"] .reason')
    assert await reason.inner_text() == "stopped by admin"
    await assert_columns_line_up(admin)

    alice = await logged_in(new_page, hub, "alice")
    await alice.goto(page_url)
    await wait_for_row(alice, alices)
    shown = await names_shown(alice)
    assert shown[alices] == "my-analysis" and bobs not in shown and stopped not in shown
    await assert_columns_line_up(alice)  # the Owner column hidden in both
