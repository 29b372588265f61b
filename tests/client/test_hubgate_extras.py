"""The client's use of hubgate's own API (``api/hubgate/...``) and its error messages.

hubgate's service is tested end to end by the lead against the real thing; here
``StubHubgateAPI`` (a stub, as its name says) answers the hubgate endpoints with
canned records so the client's side of the contract in docs/internals.md is checked,
and for the lease it forwards the v1 API to the real dask-gateway-server so the
cluster is real.
"""

from __future__ import annotations

import asyncio
import json
import warnings

import aiohttp
import pytest
from aiohttp import web

from hubgate import (
    ClusterStatus,
    Gateway,
    GatewayAuthError,
    GatewayClusterError,
    GatewayServerError,
    GatewayWarning,
    JupyterHubAuth,
)

TOKEN = "good-token"
PREFIX = "/services/dask-gateway"

CLUSTER = {
    "name": "abc",
    "owner": "bob",
    "status": "RUNNING",
    "reason": None,
    "options": {"worker_cores": 2},
    "created": "2026-11-23T10:00:00+00:00",
    "started": "2026-11-23T10:00:05+00:00",
    "stopped": None,
    "workers": {"requested": 2, "running": 2, "pending": 0},
    "adaptive": {"active": False, "minimum": None, "maximum": None},
    "threads": 4,
    "memory": 2**31,
    "cores": 4,
    "dashboard_url": PREFIX + "/clusters/abc/status",
    "scheduler_address": "gateway://127.0.0.1:8786/abc",
    "idle_since": None,
    "events": [],
}


class StubHubgateAPI:
    """Canned answers for hubgate's endpoints, behind the same 401 dance as the
    service (a request without ``Authorization: jupyterhub <token>`` gets 401)."""

    def __init__(self, forward_to: str | None = None, hubgate: bool = True) -> None:
        self.forward_to = forward_to
        self.hubgate = hubgate
        self.requests: list[tuple[str, str, object]] = []
        self.app = web.Application()
        self.app.router.add_route("*", PREFIX + "/{tail:.*}", self.handle)
        self.runner: web.AppRunner | None = None
        self.address = ""

    async def __aenter__(self) -> StubHubgateAPI:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.address = f"http://127.0.0.1:{port}{PREFIX}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p, _ in self.requests if method in (None, m)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        body = await request.read()
        if request.headers.get("Authorization") == "jupyterhub bad-scope":
            return web.json_response({"error": "Forbidden: missing scope"}, status=403)
        if request.headers.get("Authorization") != f"jupyterhub {TOKEN}":
            return web.json_response({"error": "Authentication required"}, status=401)
        payload = json.loads(body) if body else None
        path = f"{tail}?{request.query_string}" if request.query_string else tail
        self.requests.append((request.method, path, payload))
        if tail.startswith("api/hubgate/"):
            if not self.hubgate:
                return web.Response(status=404, text="404: Not Found")
            return await self.hubgate_api(request, tail[len("api/hubgate/") :], payload)
        if self.forward_to:
            return await self.forward(request, tail, body)
        return await self.v1_api(request, tail)

    async def hubgate_api(self, request, path, payload):
        if path == "whoami":
            return web.json_response({"name": "bob", "admin": True, "groups": []})
        if path == "options":
            return web.json_response(
                {
                    "fields": [
                        {
                            "field": "worker_cores",
                            "label": "Worker cores",
                            "default": 1,
                            "spec": {"type": "int", "min": 1, "max": 4},
                            "help": "CPU cores per worker.",
                        }
                    ]
                }
            )
        if path == "clusters":
            return web.json_response(
                {"clusters": [CLUSTER, {**CLUSTER, "name": "def", "owner": "eve"}]}
            )
        if path == "clusters/broken":
            return web.json_response(
                {
                    **CLUSTER,
                    "name": "broken",
                    "status": "FAILED",
                    "reason": "The scheduler exited: ModuleNotFoundError: No module named 'foo'",
                }
            )
        if path == "clusters/abc/logs":
            return web.json_response(
                {"scheduler": "scheduler log", "workers": {"w1": "worker log"}}
            )
        if path.endswith("/lease"):
            return web.json_response({"lease_expires": None})
        return web.json_response({"error": f"Cluster {path!r} not found"}, status=404)

    async def v1_api(self, request, path):
        if path == "api/v1/options":
            return web.json_response({"cluster_options": []})
        if path == "api/v1/clusters/" and request.method == "POST":
            return web.json_response({"name": "broken"}, status=201)
        if path == "api/v1/clusters/broken":
            if request.method == "DELETE":
                return web.Response(status=204)
            return web.json_response(
                {
                    "name": "broken",
                    "dashboard_route": None,
                    "status": "FAILED",
                    "start_time": 1795358053668,
                    "stop_time": 1795358055668,
                    "options": {},
                    "tls_cert": None,
                    "tls_key": None,
                }
            )
        if path == "api/v1/clusters/busy/scale":
            return web.json_response({"error": "Cluster busy is not running"}, status=409)
        if path == "api/v1/clusters/crash":
            return web.json_response({"error": "database is down"}, status=503)
        if path == "api/v1/clusters/limited/scale":
            return web.json_response({"ok": False, "msg": "Scaling to 3 instead (limit)"})
        return web.Response(status=404, text="404: Not Found")

    async def forward(self, request, path, body):
        """Pass a v1 call to the real dask-gateway-server (as user bob)."""
        headers = {"Authorization": aiohttp.BasicAuth("bob").encode()}
        if body:
            headers["Content-Type"] = "application/json"
        async with aiohttp.ClientSession() as session:
            async with session.request(
                request.method,
                f"{self.forward_to}/{path}",
                params=request.query,
                data=body or None,
                headers=headers,
            ) as resp:
                data = await resp.read()
                return web.Response(
                    status=resp.status, body=data, content_type=resp.content_type if data else None
                )


def hub_gateway(stub: StubHubgateAPI, token: str = TOKEN, **kwargs) -> Gateway:
    return Gateway(stub.address, auth=JupyterHubAuth(token), asynchronous=True, **kwargs)


async def test_extras_are_used_when_offered():
    async with StubHubgateAPI() as stub, hub_gateway(stub) as gateway:
        assert await gateway.whoami() == {"name": "bob", "admin": True, "groups": []}

        options = await gateway.cluster_options()
        assert options._fields["worker_cores"].help == "CPU cores per worker."
        assert "api/hubgate/options" in stub.paths("GET")

        everyone = await gateway.list_clusters(all_users=True)
        assert [(c.name, c.owner) for c in everyone] == [("abc", "bob"), ("def", "eve")]
        report = everyone[0]
        assert report.status is ClusterStatus.RUNNING
        assert (
            report.dashboard_link == f"{stub.address.split(PREFIX)[0]}{PREFIX}/clusters/abc/status"
        )
        assert report.scheduler_address == f"{gateway.proxy_address}/abc"
        assert report.start_time.minute == 0 and report.start_time.second == 5
        assert report.details["workers"]["running"] == 2
        assert "api/hubgate/clusters?all_users=1" in stub.paths("GET")

        await gateway.list_clusters(status=["running", "pending"], all_users=True)
        assert "api/hubgate/clusters?all_users=1&status=RUNNING,PENDING" in stub.paths("GET")

        assert await gateway.get_logs("abc") == {
            "scheduler": "scheduler log",
            "workers": {"w1": "worker log"},
        }


async def test_failed_cluster_reports_the_reason():
    async with StubHubgateAPI() as stub, hub_gateway(stub) as gateway:
        with pytest.raises(GatewayClusterError) as info:
            await gateway.new_cluster()
        assert str(info.value) == (
            "Cluster 'broken' failed to start: The scheduler exited: "
            "ModuleNotFoundError: No module named 'foo'"
        )
        # shutdown_on_close: the failed cluster is deleted, and its lease was taken.
        assert "api/v1/clusters/broken" in stub.paths("DELETE")
        assert "api/hubgate/clusters/broken/lease" in stub.paths("POST")

    async with StubHubgateAPI(hubgate=False) as stub, hub_gateway(stub) as gateway:
        with pytest.raises(GatewayClusterError, match="failed to start, see logs"):
            await gateway.new_cluster()
        assert await gateway.whoami() is None
        options = await gateway.cluster_options()  # falls back to the v1 spec
        assert len(options) == 0


async def test_error_mapping_and_auth_messages():
    async with StubHubgateAPI() as stub:
        async with hub_gateway(stub) as gateway:
            with pytest.raises(GatewayClusterError, match="^Cluster busy is not running$"):
                await gateway.scale_cluster("busy", 2)
            with pytest.raises(GatewayServerError, match="^database is down$"):
                await gateway.get_cluster("crash")
            with pytest.raises(ValueError, match="404: Not Found.*check that gateway.address"):
                await gateway.get_cluster("nothing-here")
            with pytest.warns(GatewayWarning, match="Scaling to 3 instead"):
                await gateway.scale_cluster("limited", 5)

        async with hub_gateway(stub, token="wrong") as gateway:
            with pytest.raises(GatewayAuthError) as info:
                await gateway.list_clusters()
            text = str(info.value)
            assert info.value.status == 401
            assert isinstance(info.value, aiohttp.ClientResponseError)
            assert "token is missing, invalid or expired" in text
            assert "`access:services!service=dask-gateway`" in text
            assert f"{stub.address.split(PREFIX)[0]}/hub/token" in text

        async with hub_gateway(stub, token="bad-scope") as gateway:
            with pytest.raises(GatewayAuthError) as info:
                await gateway.list_clusters()
            assert info.value.status == 403
            assert "Forbidden: missing scope" in str(info.value)
            assert "`access:services!service=dask-gateway` scope" in str(info.value)


async def test_sync_api_against_the_stub():
    async with StubHubgateAPI() as stub:
        # The sync client runs its own loop in a thread; this loop keeps serving.
        def use_sync_client():
            with Gateway(stub.address, auth=JupyterHubAuth(TOKEN)) as gateway:
                return gateway.whoami(), gateway.list_clusters(all_users=True)

        whoami, clusters = await asyncio.get_running_loop().run_in_executor(None, use_sync_client)
        assert whoami["name"] == "bob" and len(clusters) == 2


@pytest.mark.slow
async def test_lease_kept_and_released(dask_gateway_server, wait_for):
    """A real cluster (v1 forwarded to dask-gateway-server) with shutdown_on_close:
    the client takes a 60 s lease, and releases it (0 s) on close(shutdown=False)."""
    async with StubHubgateAPI(forward_to=dask_gateway_server.address) as stub:
        async with hub_gateway(stub, proxy_address=dask_gateway_server.proxy_address) as gateway:
            cluster = await gateway.new_cluster(shutdown_on_close=True)
            try:
                assert cluster.status == "running"
                leases = [p for m, p, b in stub.requests if p.endswith("/lease")]
                assert leases and leases[0] == f"api/hubgate/clusters/{cluster.name}/lease"
                assert stub.requests[[p for _, p, _ in stub.requests].index(leases[0])][2] == {
                    "seconds": 60
                }
                await cluster.close(shutdown=False)
                lease_bodies = [b for m, p, b in stub.requests if p.endswith("/lease")]
                assert lease_bodies[-1] == {"seconds": 0}
                assert (await gateway.get_cluster(cluster.name)).status is ClusterStatus.RUNNING
            finally:
                await gateway.stop_cluster(cluster.name)

            # shutdown_on_close=False takes no lease at all.
            before = len(stub.requests)
            with warnings.catch_warnings():
                warnings.simplefilter("error", GatewayWarning)
                kept = await gateway.new_cluster(shutdown_on_close=False)
            await kept.close()
            assert not [p for _, p, _ in stub.requests[before:] if p.endswith("/lease")]
            await gateway.stop_cluster(kept.name)


def test_cluster_and_gateway_html_are_escaped(monkeypatch):
    import IPython.display

    from hubgate import GatewayCluster

    cluster = object.__new__(GatewayCluster)
    cluster.name = "<b>x</b>"
    cluster.status = "running"
    cluster.dashboard_link = "http://h/clusters/x/status?a=1&b='2'"
    page = cluster._repr_html_()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "a=1&amp;b=&#x27;2&#x27;" in page

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    import hubgate.widgets

    monkeypatch.setattr(hubgate.widgets, "cluster_widget", lambda c: ("widget", c))
    cluster._ipython_display_()
    assert shown[-1] == ("widget", cluster)

    def no_widgets(c):
        raise ImportError("ipywidgets is not installed")

    monkeypatch.setattr(hubgate.widgets, "cluster_widget", no_widgets)
    cluster._ipython_display_()
    assert shown[-1]["text/html"] == page
