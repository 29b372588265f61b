"""The shared browser fixtures drive a real Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import tornado.httpserver
import tornado.testing
import tornado.web
from playwright.async_api import Page

PAGE = """<!doctype html>
<html><head><title>probe</title></head>
<body><p id="static">served by the test</p><p id="dynamic">not yet</p>
<script>document.getElementById("dynamic").textContent = "set by " + "javascript";</script>
</body></html>"""


class ProbeHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        cookie = self.get_cookie("probe")
        self.set_cookie("probe", "seen")
        self.set_header("X-Had-Cookie", "yes" if cookie else "no")
        self.write(PAGE)


@pytest.fixture
async def probe_url() -> AsyncIterator[str]:
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/", ProbeHandler)]))
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{port}/"
    server.stop()
    await server.close_all_connections()


async def test_page_reads_a_local_page(page: Page, probe_url: str) -> None:
    response = await page.goto(probe_url)
    assert response is not None and response.ok
    assert await page.title() == "probe"
    assert await page.inner_text("#static") == "served by the test"
    assert await page.inner_text("#dynamic") == "set by javascript"


async def test_new_page_contexts_do_not_share_cookies(new_page, probe_url: str) -> None:
    first = await new_page()
    await first.goto(probe_url)
    again = await first.goto(probe_url)
    assert again is not None and again.headers["x-had-cookie"] == "yes"

    other = await new_page()
    fresh = await other.goto(probe_url)
    assert fresh is not None and fresh.headers["x-had-cookie"] == "no"
