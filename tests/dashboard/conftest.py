"""Fixtures for the dashboard proxy and the clusters page.

A real ``distributed`` scheduler (with its Bokeh dashboard under ``/clusters/<name>``
and hubgate's dashboard secret required) runs in a subprocess; the proxy and page
handlers are mounted in small tornado apps in the test process with stub settings
callables.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from jupyterhub.services.auth import HubOAuth, HubOAuthenticated
from tornado import httpserver, web, websocket

from hubgate.hub_service.dashboard_proxy import check_dashboard_access, dashboard_routes
from hubgate.hub_service.pages import page_routes
from hubgate.runtime.dashboard_guard import dashboard_prefix

SERVICE_PREFIX = "/services/dask-gateway/"
CLUSTER = "c0ffee"
DASHBOARD = dashboard_prefix(CLUSTER)
# What the service would give the scheduler and present through the proxy.
SECRETS = {CLUSTER: "the-c0ffee-secret", "echo": "the-echo-secret"}
OWNERS = {CLUSTER: "alice", "dead": "alice", "echo": "alice"}
ADMINS = {"root"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Runs in the subprocess: a plain scheduler whose dashboard lives under its prefix and
# requires the secret, exactly as the cluster runtime starts it (cluster_process.py).
SCHEDULER_MAIN = """
import asyncio, json, sys
import dask
from distributed import Scheduler
from hubgate.runtime.dashboard_guard import require_dashboard_secret

async def main(prefix, secret):
    # Also serve the scheduler's JSON API (it has a POST endpoint) under the dashboard.
    routes = dask.config.get("distributed.scheduler.http.routes")
    dask.config.set({"distributed.scheduler.http.routes": [*routes, "distributed.http.scheduler.api"]})
    scheduler = Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0",
                          http_prefix=prefix)
    require_dashboard_secret(scheduler.http_application, secret)
    async with scheduler:
        port = scheduler.http_server.port
        print(json.dumps({"dashboard": f"http://127.0.0.1:{port}"}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def dashboard_address() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a real scheduler dashboard in a subprocess."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SCHEDULER_MAIN, DASHBOARD, SECRETS[CLUSTER]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline()  # the scheduler prints once its dashboard listens
        if not line:
            raise RuntimeError(f"scheduler exited with {proc.wait(timeout=60)}")
        yield json.loads(line)["dashboard"]
    finally:
        proc.stdin.close()  # asks it to close cleanly
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def viewer_of(handler: web.RequestHandler) -> str | None:
    """Who is asking: the test's stand-in for the hub's identity (a plain cookie)."""
    return handler.get_cookie("test_user") or handler.request.headers.get("X-Test-User")


EMBEDDER = "http://hub.example.org"


async def stub_authorize(handler: web.RequestHandler, name: str) -> str | None:
    viewer = viewer_of(handler)
    if viewer is None:
        raise web.HTTPError(401, "%s", "Log in first.")
    check_dashboard_access(name, OWNERS.get(name), viewer, viewer in ADMINS)
    return EMBEDDER


def make_hub_auth() -> HubOAuth:
    """A HubOAuth pointing at a hub that is not there: enough for the login redirect and
    the XSRF token logic, which need no hub round trip."""
    return HubOAuth(
        api_token="not-a-real-token",
        api_url="http://127.0.0.1:9/hub/api",
        hub_prefix="/hub/",
        base_url=SERVICE_PREFIX,
        oauth_client_id="service-dask-gateway",
        oauth_redirect_uri=f"{SERVICE_PREFIX}oauth_callback",
        access_scopes={"access:services!service=dask-gateway"},
    )


@dataclass
class ServedApp:
    url: str
    settings: dict[str, Any]
    recorded: list[dict[str, Any]] = field(default_factory=list)
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)


async def serve(handlers: list[Any], settings: dict[str, Any]) -> tuple[Any, str]:
    app = web.Application(handlers, **settings)
    server = httpserver.HTTPServer(app, xheaders=False)
    port = free_port()
    server.listen(port, "127.0.0.1")
    return server, f"http://127.0.0.1:{port}"


class EchoHandler(web.RequestHandler):
    """Says what it received, for the pass-through details a dashboard doesn't show."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def _echo(self) -> None:
        path = self.request.path
        if path.endswith("/redirect"):
            self.redirect("/somewhere/else?x=1", status=302)
            return
        if path.endswith("/cookies"):
            self.add_header("Set-Cookie", "a=1; Path=/")
            self.add_header("Set-Cookie", "b=2; Path=/")
        if path.endswith("/big"):
            self.set_header("Content-Type", "application/octet-stream")
            for i in range(64):
                self.write(bytes([i]) * 65536)
            return
        body = self.request.body
        self.finish(
            {
                "method": self.request.method,
                "uri": self.request.uri,
                "headers": [[k.lower(), v] for k, v in self.request.headers.get_all()],
                "body_length": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
        )

    get = head = post = delete = patch = put = options = _echo  # type: ignore[assignment]


class EchoWebSocket(websocket.WebSocketHandler):
    """Echoes text and binary; ``close <code> <reason>`` closes with that code."""

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return subprotocols[0] if subprotocols else None

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith("close "):
            _, code, reason = message.split(" ", 2)
            self.close(int(code), reason)
            return
        self.write_message(message, binary=isinstance(message, bytes))


@pytest.fixture(scope="session")
async def echo_address() -> AsyncIterator[str]:
    server, url = await serve([(r".*/ws", EchoWebSocket), (r".*", EchoHandler)], {})
    yield url
    server.stop()
    await asyncio.wait_for(server.close_all_connections(), 30)


@pytest.fixture(scope="session")
async def proxy_app(dashboard_address: str, echo_address: str) -> AsyncIterator[ServedApp]:
    """The proxy handlers as the dashboard origin mounts them, upstream = the real
    scheduler. Cluster "dead" points at a port nobody listens on, "echo" at the echo
    server."""
    dead = f"http://127.0.0.1:{free_port()}"
    targets = {CLUSTER: dashboard_address, "dead": dead, "echo": echo_address}
    settings = {
        "hubgate_dashboard_target": targets.get,
        "hubgate_dashboard_authorize": stub_authorize,
        "hubgate_dashboard_secret": SECRETS.get,
        "cookie_secret": "x" * 32,
    }
    server, url = await serve(dashboard_routes("/"), settings)
    yield ServedApp(url=url, settings=settings)
    server.stop()
    await asyncio.wait_for(server.close_all_connections(), 30)


def sample_clusters() -> dict[str, dict[str, Any]]:
    """Clusters as ``GET api/hubgate/clusters`` returns them (internals.md)."""

    def cluster(name: str, owner: str, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "owner": owner,
            "status": status,
            "reason": "",
            "options": {},
            "created": "2026-01-01T10:00:00+00:00",
            "started": "2026-01-01T10:00:05+00:00",
            "stopped": None,
            "workers": {"requested": 2, "running": 2, "pending": 0},
            "adaptive": {"active": False, "minimum": 0, "maximum": 0},
            "threads": 4,
            "memory": 4 * 2**30,
            "cores": 4,
            "dashboard_url": f"{SERVICE_PREFIX}clusters/{name}/status",
            "scheduler_address": f"gateway://127.0.0.1:8786/{name}",
            "idle_since": None,
            "events": [],
            **extra,
        }

    return {
        "alpha": cluster("alpha", "alice", "RUNNING"),
        "beta": cluster("beta", "<b>mallory</b>", "RUNNING", reason="<img src=x onerror=alert(1)>"),
        # Listed, but already gone when the service is asked to stop it.
        "ghost": cluster("ghost", "bob", "RUNNING"),
    }


class RecordingAPI(HubOAuthenticated, web.RequestHandler):
    """The service's cluster API as the page sees it, recording what the page sends.

    XSRF is checked with JupyterHub's real rule for cookie-authenticated requests."""

    def initialize(self, recorded: list[dict[str, Any]], clusters: dict[str, Any]) -> None:
        self.hub_auth = self.settings["hub_auth"]
        self.recorded = recorded
        self.clusters = clusters

    def check_xsrf_cookie(self) -> None:
        self.hub_auth.check_xsrf_cookie(self)

    def prepare(self) -> None:
        self.recorded.append(
            {
                "method": self.request.method,
                "path": self.request.path,
                "query": self.request.query,
                "body": self.request.body.decode(),
            }
        )
        if self.request.method != "GET":
            self.check_xsrf_cookie()
        self.set_header("Content-Type", "application/json")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.finish({"error": message})

    def get(self, what: str) -> None:
        viewer = viewer_of(self)
        if what == "whoami":
            self.finish({"name": viewer, "admin": viewer in ADMINS, "groups": []})
        elif what == "clusters":
            self.finish({"clusters": list(self.clusters.values())})
        else:
            raise web.HTTPError(404, "unknown")

    def delete(self, what: str) -> None:
        name = what.removeprefix("clusters/")
        if name == "ghost":
            self.clusters.pop(name)
            raise web.HTTPError(404, "Cluster 'ghost' does not exist (any more).")
        cluster = self.clusters[name]
        cluster["status"] = "STOPPING"
        self.set_status(202)
        self.finish(cluster)

    def post(self, what: str) -> None:
        name = what.removeprefix("clusters/").removesuffix("/scale")
        count = json.loads(self.request.body)["count"]
        cluster = self.clusters[name]
        cluster["workers"]["requested"] = count
        self.finish({"ok": True, "msg": "", "cluster": cluster})


async def stub_page_user(handler: web.RequestHandler) -> dict[str, Any] | None:
    viewer = viewer_of(handler)
    return {"name": viewer, "admin": viewer in ADMINS} if viewer else None


@pytest.fixture
async def page_app() -> AsyncIterator[ServedApp]:
    """The clusters page and a recording stand-in for the service's JSON API."""
    recorded: list[dict[str, Any]] = []
    clusters = sample_clusters()
    settings = {
        "hub_auth": make_hub_auth(),
        "hubgate_page_user": stub_page_user,
        "cookie_secret": "y" * 32,
    }
    handlers = [
        *page_routes(SERVICE_PREFIX),
        (
            rf"{SERVICE_PREFIX}api/hubgate/(.+)",
            RecordingAPI,
            {"recorded": recorded, "clusters": clusters},
        ),
    ]
    server, url = await serve(handlers, settings)
    yield ServedApp(url=url, settings=settings, recorded=recorded, clusters=clusters)
    server.stop()
    await asyncio.wait_for(server.close_all_connections(), 30)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()
