"""The widgets' refresh: one loop per cluster on the client's event loop, while shown.

``StubService`` answers the few endpoints of hubgate's API that the widgets read (a
stub, as its name says: the real service is exercised by tests/browser/test_sidebar.py)
and counts the requests, and how many of them for one path were ever in flight at once.
The clients are real ``hubgate.Gateway`` objects. A frontend tells the kernel how many
views of a widget it shows through the ``_view_count`` trait (ipywidgets' comm message
``update``); ``show`` / ``hide`` send the same state change.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from hubgate import Gateway, JupyterHubAuth
from hubgate.widgets import cluster_widget, gateway_widget, refresh

PREFIX = "/services/dask-gateway"
INTERVAL = 0.01  # seconds between refreshes: many refreshes in a short test
HOLD = 0.02  # seconds the stub takes per cluster read, so overlapping loops would show


def record(name: str, status: str = "RUNNING", running: int = 2, **extra: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "owner": "alice",
        "status": status,
        "reason": None,
        "options": {},
        "created": "2026-11-23T10:00:00+00:00",
        "started": "2026-11-23T10:00:05+00:00",
        "stopped": None,
        "workers": {"requested": running, "running": running, "pending": 0},
        "adaptive": {"active": False, "minimum": None, "maximum": None},
        "threads": 2 * running,
        "memory": running * 2**30,
        "cores": running,
        "dashboard_url": f"{PREFIX}/clusters/{name}/status",
        "scheduler_address": None,
        "events": [],
    }
    base.update(extra)
    return base


class StubService:
    """hubgate's whoami, cluster list, cluster record, scale and stop, on a loop thread
    of its own (the clients' loops are theirs)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.max_in_flight: collections.Counter[str] = collections.Counter()
        self.address = ""
        self.failing = False  # answer cluster reads with a 500
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stub-service")
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> StubService:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", PREFIX + "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.address = f"http://127.0.0.1:{port}{PREFIX}"

    def count(self, path: str) -> int:
        return sum(1 for _, p in list(self.requests) if p == path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["tail"]
        self.requests.append((request.method, path))
        self.in_flight[path] += 1
        self.max_in_flight[path] = max(self.max_in_flight[path], self.in_flight[path])
        try:
            return await self.answer(request.method, path)
        finally:
            self.in_flight[path] -= 1

    async def answer(self, method: str, path: str) -> web.StreamResponse:
        parts = path.split("/")
        if path == "api/hubgate/whoami":
            return web.json_response({"name": "alice", "admin": False, "groups": []})
        if path == "api/hubgate/clusters":
            active = [r for r in self.records.values() if r["status"] in ("PENDING", "RUNNING")]
            return web.json_response({"clusters": active})
        if parts[:3] == ["api", "hubgate", "clusters"] and len(parts) == 4:
            await asyncio.sleep(HOLD)
            if self.failing:
                return web.json_response({"error": "database unavailable"}, status=500)
            if parts[3] not in self.records:
                return web.json_response({"error": "no such cluster"}, status=404)
            return web.json_response(self.records[parts[3]])
        if method == "POST" and parts[:3] == ["api", "v1", "clusters"] and parts[4:] == ["scale"]:
            return web.json_response({"ok": True, "msg": ""})
        if method == "DELETE" and parts[:3] == ["api", "v1", "clusters"]:
            self.records[parts[3]]["status"] = "STOPPED"
            return web.Response(status=204)
        return web.json_response({"error": f"unexpected {method} {path}"}, status=404)


class ConnectedCluster:
    """A ``GatewayCluster``-shaped object around a real ``Gateway``: what the widgets
    read (name, status, gateway, dashboard_link, scheduler_info) and do. A real
    ``GatewayCluster`` also needs a scheduler to connect to, which the stub has not."""

    def __init__(self, gateway: Gateway, name: str) -> None:
        self.gateway = gateway
        self.name = name
        self.status = "running"
        self.dashboard_link: str | None = None
        self.scheduler_info: dict[str, Any] = {}

    def scale(self, n: int) -> None:
        self.gateway.scale_cluster(self.name, n)

    def adapt(self, minimum: int | None = None, maximum: int | None = None) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        self.gateway.stop_cluster(self.name)
        self.status = "closed"


@pytest.fixture
def service() -> Iterator[StubService]:
    with StubService() as stub:
        stub.records["abc"] = record("abc")
        yield stub


@pytest.fixture
def gateway(service: StubService) -> Iterator[Gateway]:
    with Gateway(service.address, auth=JupyterHubAuth("token")) as client:
        yield client


@pytest.fixture
def widgets() -> Iterator[list[Any]]:
    """Widgets made by the test; closed at its end."""
    made: list[Any] = []
    yield made
    for widget in made:
        widget.close()


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def show(widget: Any) -> None:
    """What a frontend sends when it displays a view of ``widget``."""
    widget.set_state({"_view_count": (widget._view_count or 0) + 1})


def hide(widget: Any) -> None:
    """What a frontend sends when a view is removed (its output cleared)."""
    widget.set_state({"_view_count": widget._view_count - 1})


def loop_of(widget: Any) -> refresh.Refresh:
    [loop] = refresh.running(widget._source.key)
    return loop


def settle(gateway: Gateway) -> None:
    """Let the gateway's loop run the callbacks already scheduled on it."""

    async def nothing() -> None:
        await asyncio.sleep(0)

    gateway.sync(nothing)


RECORD_PATH = "api/hubgate/clusters/abc"


def test_three_displays_and_a_gateway_widget_make_one_loop_and_no_thread(
    service: StubService, gateway: Gateway, widgets: list[Any]
) -> None:
    cluster = ConnectedCluster(gateway, "abc")
    gateway.whoami()  # the client's HTTP session exists before the count starts
    threads_before = set(threading.enumerate())

    views = [cluster_widget(cluster, refresh_interval=INTERVAL) for _ in range(3)]
    widgets += views
    listing = gateway_widget(gateway, refresh_interval=INTERVAL)
    widgets.append(listing)
    for widget in [*views, listing]:
        show(widget)

    wait_for(lambda: service.count(RECORD_PATH) >= 20, "20 refreshes of the cluster")
    assert set(threading.enumerate()) == threads_before
    loop = loop_of(views[0])
    assert len(loop.subscriptions) == 3
    assert [r.key[0] for r in refresh.running()] == ["cluster", "clusters"]
    # One loop never has two reads of the cluster in flight; a loop per display would.
    assert service.max_in_flight[RECORD_PATH] == 1

    service.records["abc"] = record("abc", running=3)
    wait_for(
        lambda: all(w.state.workers_running == 3 for w in views), "every view to show 3 workers"
    )
    assert listing.cards["abc"].state.workers_running is not None

    for widget in [*views, listing]:
        widget.close()
    assert loop.stopped.wait(30)
    settle(gateway)
    assert refresh.running() == [] and not gateway._background_tasks


def test_clearing_every_output_stops_the_loop_and_showing_again_restarts_it(
    service: StubService, gateway: Gateway, widgets: list[Any]
) -> None:
    first = cluster_widget(ConnectedCluster(gateway, "abc"), refresh_interval=INTERVAL)
    second = cluster_widget(ConnectedCluster(gateway, "abc"), refresh_interval=INTERVAL)
    widgets += [first, second]
    assert refresh.running() == []  # nothing is refreshed before a view exists

    show(first)
    show(first)  # the same widget in two outputs
    show(second)
    loop = loop_of(first)
    wait_for(lambda: loop.fetches >= 3, "refreshes")

    hide(first)
    hide(second)
    assert first.refreshing and not second.refreshing and not loop.stopped.is_set()
    hide(first)  # its last output cleared
    assert not first.refreshing
    assert loop.stopped.wait(30)
    settle(gateway)
    assert refresh.running() == [] and not gateway._background_tasks
    requests = service.count(RECORD_PATH)
    assert gateway.whoami() is not None  # a round trip through the same loop
    assert service.count(RECORD_PATH) == requests

    show(second)
    wait_for(lambda: service.count(RECORD_PATH) > requests + 2, "refreshes after re-display")
    assert loop_of(second) is not loop


def test_a_stopped_cluster_ends_the_loop(
    service: StubService, gateway: Gateway, widgets: list[Any]
) -> None:
    widget = cluster_widget(ConnectedCluster(gateway, "abc"), refresh_interval=INTERVAL)
    widgets.append(widget)
    show(widget)
    loop = loop_of(widget)
    wait_for(lambda: widget.state.status == "RUNNING", "the running state")

    service.records["abc"] = record("abc", status="FAILED", reason="worker <w1> ran out of memory")
    assert loop.stopped.wait(30)
    assert widget.state.status == "FAILED" and not widget.refreshing
    assert "worker &lt;w1&gt; ran out of memory" in widget.failure.value
    assert widget.scale_button.disabled and widget.shutdown_button.disabled
    settle(gateway)
    assert not gateway._background_tasks

    # Shown again, a final cluster is not refreshed at all.
    show(widget)
    assert refresh.running() == []


def test_shutdown_from_the_widget_ends_the_loop(
    service: StubService, gateway: Gateway, widgets: list[Any]
) -> None:
    widget = cluster_widget(ConnectedCluster(gateway, "abc"), refresh_interval=INTERVAL)
    widgets.append(widget)
    show(widget)
    loop = loop_of(widget)
    widget.shutdown_button.click()
    assert ("DELETE", "api/v1/clusters/abc") in service.requests
    assert widget.state.final and widget.shutdown_button.disabled
    assert widget.message.value == ""
    assert loop.stopped.wait(30)


def test_closing_the_cluster_object_ends_the_loop(
    service: StubService, gateway: Gateway, widgets: list[Any]
) -> None:
    cluster = ConnectedCluster(gateway, "abc")
    widget = cluster_widget(cluster, refresh_interval=INTERVAL)
    widgets.append(widget)
    show(widget)
    loop = loop_of(widget)
    wait_for(lambda: loop.fetches >= 2, "refreshes")
    cluster.status = "closed"  # what GatewayCluster.close() leaves
    assert loop.stopped.wait(30)
    assert widget.state.status == "CLOSED" and widget.scale_button.disabled
    assert not widget.refreshing


def test_closing_the_gateway_ends_the_loops(service: StubService, widgets: list[Any]) -> None:
    client = Gateway(service.address, auth=JupyterHubAuth("token"))
    try:
        widget = cluster_widget(ConnectedCluster(client, "abc"), refresh_interval=INTERVAL)
        listing = gateway_widget(client, refresh_interval=INTERVAL)
        widgets += [widget, listing]
        show(widget)
        show(listing)
        loops = refresh.running()
        wait_for(lambda: all(r.fetches >= 2 for r in loops), "both loops to refresh")
    finally:
        client.close()
    assert all(r.stopped.is_set() for r in loops)
    assert refresh.running() == []
    assert "client was closed" in widget.message.value
    assert widget.scale_button.disabled and not widget.refreshing
    assert "client was closed" in listing.message.value
    assert listing.refresh_button.disabled
    assert listing.cards["abc"].scale_button.disabled


def test_views_through_another_client_carry_on_when_one_client_closes(
    service: StubService, gateway: Gateway, widgets: list[Any]
) -> None:
    # gateway.connect(name) twice: two clients with the gateway's credentials.
    other = Gateway(service.address, auth=gateway.auth)
    try:
        staying = cluster_widget(ConnectedCluster(gateway, "abc"), refresh_interval=INTERVAL)
        leaving = cluster_widget(ConnectedCluster(other, "abc"), refresh_interval=INTERVAL)
        widgets += [staying, leaving]
        show(leaving)
        show(staying)
        loop = loop_of(staying)
        assert loop.source.loop is other.loop.asyncio_loop
        wait_for(lambda: loop.fetches >= 2, "refreshes")
    finally:
        other.close()
    assert not leaving.refreshing and "client was closed" in leaving.message.value
    assert staying.refreshing and refresh.running() == [loop]
    assert loop.source.loop is gateway.loop.asyncio_loop
    requests = service.count(RECORD_PATH)
    wait_for(lambda: service.count(RECORD_PATH) > requests + 2, "refreshes through the other")
    staying.close()
    assert loop.stopped.wait(30)


def test_a_refresh_error_is_shown_then_cleared(
    service: StubService, gateway: Gateway, widgets: list[Any]
) -> None:
    widget = cluster_widget(ConnectedCluster(gateway, "abc"), refresh_interval=INTERVAL)
    widgets.append(widget)
    service.failing = True
    show(widget)
    wait_for(lambda: "Could not refresh" in widget.message.value, "the error")
    assert widget.refreshing and not widget.scale_button.disabled
    service.failing = False
    wait_for(lambda: widget.message.value == "", "the error to clear")
    assert widget.state.status == "RUNNING"


def test_a_cluster_the_service_does_not_know_ends_the_loop(
    service: StubService, gateway: Gateway, widgets: list[Any]
) -> None:
    widget = cluster_widget(ConnectedCluster(gateway, "gone"), refresh_interval=INTERVAL)
    widgets.append(widget)
    show(widget)
    loop = loop_of(widget)
    # A 404: the service does not know the cluster (any more).
    assert loop.stopped.wait(30)
    assert "no longer knows this cluster" in widget.message.value
    assert widget.scale_button.disabled


async def test_an_asynchronous_gateway_refreshes_on_its_own_loop(widgets: list[Any]) -> None:
    with StubService() as service:
        service.records["abc"] = record("abc", running=1)
        async with Gateway(
            service.address, auth=JupyterHubAuth("token"), asynchronous=True
        ) as client:
            await client.whoami()
            threads_before = set(threading.enumerate())
            widget = cluster_widget(ConnectedCluster(client, "abc"), refresh_interval=INTERVAL)
            widgets.append(widget)
            show(widget)
            loop = loop_of(widget)
            assert loop.source.loop is asyncio.get_running_loop()
            # The state is a plain attribute the loop sets: nothing to await but time.
            while widget.state.workers_running != 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            assert set(threading.enumerate()) == threads_before
            await client.close()
            assert loop.stopped.is_set() and not widget.refreshing
