"""What a scheduler skips at start-up so that a host can start many clusters quickly."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

bokeh_tornado = pytest.importorskip("bokeh.server.tornado")

from hubgate.runtime.cluster_process import skip_bokeh_route_listing  # noqa: E402


@pytest.fixture
def bokeh_module() -> Iterator[None]:
    original, level = bokeh_tornado.pformat, bokeh_tornado.log.level
    yield
    bokeh_tornado.pformat = original
    bokeh_tornado.log.setLevel(level)


def _formats_routes() -> bool:
    return bokeh_tornado.pformat([("/status", object)]) != ""


def test_route_table_is_not_formatted_for_a_log_nobody_reads(bokeh_module: None) -> None:
    bokeh_tornado.log.setLevel(logging.INFO)
    assert _formats_routes()
    assert skip_bokeh_route_listing()
    assert not _formats_routes()


def test_route_table_is_formatted_when_debug_logging_is_on(bokeh_module: None) -> None:
    bokeh_tornado.log.setLevel(logging.DEBUG)
    assert not skip_bokeh_route_listing()
    assert _formats_routes()


# Runs in a subprocess (a scheduler in the test process would leave its threads): a
# scheduler as cluster_process starts it (dashboard under its prefix, the secret
# required), asked for its dashboard without and with the secret.
DEFERRED_DASHBOARD = """
import asyncio, json, sys
from bokeh.server.tornado import BokehTornado
from distributed import Scheduler
from tornado.httpclient import AsyncHTTPClient
from hubgate.runtime.dashboard_guard import SECRET_HEADER, require_dashboard_secret
from hubgate.runtime.deferred_dashboard import defer_dashboard

PREFIX, SECRET = "/clusters/c0ffee", "the-secret"

async def main():
    deferred = defer_dashboard() and defer_dashboard()  # idempotent
    scheduler = Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0",
                          http_prefix=PREFIX)
    require_dashboard_secret(scheduler.http_application, SECRET)
    built = lambda: sum(isinstance(a, BokehTornado)
                        for a in scheduler.http_application.applications)
    out = {"deferred": deferred}
    async with scheduler:
        base = f"http://127.0.0.1:{scheduler.http_server.port}{PREFIX}"
        client = AsyncHTTPClient()

        async def get(path, secret):
            headers = {SECRET_HEADER: SECRET} if secret else {}
            resp = await client.fetch(base + path, headers=headers, raise_error=False)
            return resp.code, resp.body

        out["built_at_start"] = built()
        out["refused"] = (await get("/status", False))[0]
        out["built_after_refused"] = built()
        out["status"] = (await get("/status", True))[0]
        out["built_after_status"] = built()
        code, body = await get("/individual-plots.json", True)
        out["plots"] = sorted(json.loads(body)) if code == 200 else code
        out["built_at_end"] = built()
        client.close()
    print(json.dumps(out), flush=True)

asyncio.run(main())
"""


def test_dashboard_is_built_on_its_first_authorised_request() -> None:
    """A scheduler starts without distributed's Bokeh application (about 260 regular
    expressions compiled under the cluster's own prefix: ~40 % of a forked scheduler's
    start-up CPU) and builds it, once, when a request with the secret first asks;
    the pages and the plot list the sidebar reads are then the ones distributed
    serves."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", DEFERRED_DASHBOARD],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["deferred"] is True
    assert out["built_at_start"] == 0
    assert out["refused"] == 403
    assert out["built_after_refused"] == 0  # a request without the secret costs nothing
    assert out["status"] == 200
    assert out["built_after_status"] == 1
    assert "Individual Task Stream" in out["plots"]
    assert out["built_at_end"] == 1
