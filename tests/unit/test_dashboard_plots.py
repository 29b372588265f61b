"""The plot list the sidebar shows (``hub_service/dashboard_plots.py``), from a scheduler
that is the cluster owner's code: asked with the dashboard secret under the cluster's
prefix, and bounded and checked whatever it answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from hubgate.hub_service.dashboard_plots import (
    MAX_BODY,
    MAX_PLOTS,
    DashboardPlot,
    DashboardPlotsError,
    fetch_plots,
    parse_plots,
)
from hubgate.runtime.dashboard_guard import SECRET_HEADER

PREFIX = "/clusters/abc"
SECRET = "the-dashboard-secret"


def test_distributed_answer_becomes_sorted_relative_pages() -> None:
    body = json.dumps(
        {
            "Individual Task Stream": "/individual-task-stream",
            "Individual Cytoscape": "/statics/individual-cytoscape.html",
            "Individual Progress": PREFIX + "/individual-progress",
        }
    ).encode()
    assert parse_plots(body, PREFIX) == [
        DashboardPlot("Individual Cytoscape", "statics/individual-cytoscape.html"),
        DashboardPlot("Individual Progress", "individual-progress"),
        DashboardPlot("Individual Task Stream", "individual-task-stream"),
    ]


@pytest.mark.parametrize(
    "path",
    [
        "https://evil.example/x",
        "//evil.example/x",
        "/../../hub/api",
        "/a/./b",
        "/individual-cpu?token=x",
        "/individual-cpu#x",
        "/ind ividual",
        "/",
        "",
        "/a//b",
        "/x" * 200,
        None,
        3,
        ["/individual-cpu"],
        {"path": "/individual-cpu"},
    ],
)
def test_paths_that_are_not_plain_dashboard_pages_are_dropped(path: Any) -> None:
    body = json.dumps({"Evil": path, "Good": "/individual-cpu"}).encode()
    assert parse_plots(body, PREFIX) == [DashboardPlot("Good", "individual-cpu")]


def test_titles_are_short_plain_text() -> None:
    body = json.dumps(
        {
            "A\u202eB\nC\t D": "/individual-a",
            "x" * 101: "/individual-long",
            "   ": "/individual-blank",
            "Same path again": "/individual-a",
        }
    ).encode()
    # The first title for a path wins; control and bidi characters are removed.
    assert (
        parse_plots(body, PREFIX)
        == [
            DashboardPlot("AB C D", "individual-a"),
            DashboardPlot("Same path again", "individual-a"),
        ][:1]
    )


def test_at_most_max_plots() -> None:
    body = json.dumps({f"P{i:04}": f"/individual-{i}" for i in range(MAX_PLOTS * 3)}).encode()
    plots = parse_plots(body, PREFIX)
    assert len(plots) == MAX_PLOTS


@pytest.mark.parametrize(
    "body", [b"<html>login</html>", b"[1, 2]", b'"text"', b"null", b"[" * 100_000]
)
def test_answers_that_are_not_an_object_are_refused(body: bytes) -> None:
    with pytest.raises(DashboardPlotsError) as info:
        parse_plots(body, PREFIX)
    assert info.value.status_code == 502
    assert "did not answer with a list of plots" in info.value.message


class FakeScheduler:
    """A scheduler's dashboard that answers ``individual-plots.json`` as told."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"{}"
        self.seen: list[tuple[str, str | None]] = []


@pytest.fixture
async def scheduler() -> AsyncIterator[tuple[str, FakeScheduler]]:
    fake = FakeScheduler()

    class Plots(RequestHandler):
        def get(self) -> None:
            fake.seen.append((self.request.path, self.request.headers.get(SECRET_HEADER)))
            self.set_status(fake.status)
            if fake.status in (301, 302):
                self.set_header("Location", "http://127.0.0.1:1/elsewhere")
            self.finish(fake.body)

    [sock] = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(Application([(r"/.*", Plots)]))
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", fake
    server.stop()
    await server.close_all_connections()


async def test_fetch_asks_under_the_prefix_with_the_secret(
    scheduler: tuple[str, FakeScheduler],
) -> None:
    address, fake = scheduler
    fake.body = json.dumps({"Individual Cpu": "/individual-cpu"}).encode()
    assert await fetch_plots("abc", address, SECRET) == [
        DashboardPlot("Individual Cpu", "individual-cpu")
    ]
    assert fake.seen == [(PREFIX + "/individual-plots.json", SECRET)]


async def test_fetch_refuses_an_oversized_answer(scheduler: tuple[str, FakeScheduler]) -> None:
    address, fake = scheduler
    entries = {f"P{i}": f"/individual-{i}" for i in range(MAX_BODY // 10)}
    fake.body = json.dumps(entries).encode()
    assert len(fake.body) > MAX_BODY
    with pytest.raises(
        DashboardPlotsError, match="not answering, or sent a plot list over 256 KiB"
    ):
        await fetch_plots("abc", address, SECRET)


@pytest.mark.parametrize("status", [302, 403, 404, 500])
async def test_fetch_refuses_other_statuses_and_follows_no_redirect(
    scheduler: tuple[str, FakeScheduler], status: int
) -> None:
    address, fake = scheduler
    fake.status = status
    with pytest.raises(DashboardPlotsError, match=f"answered {status} for its plot list"):
        await fetch_plots("abc", address, SECRET)
    assert len(fake.seen) == 1


async def test_fetch_from_a_dashboard_that_is_gone() -> None:
    [sock] = bind_sockets(0, "127.0.0.1")
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(DashboardPlotsError, match="not answering"):
        await fetch_plots("abc", f"http://127.0.0.1:{port}", SECRET)
