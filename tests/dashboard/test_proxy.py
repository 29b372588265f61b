"""The dashboard proxy against a real scheduler dashboard (and an echo server for the
pass-through details a dashboard doesn't expose)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

from .conftest import DASHBOARD, EMBEDDER, SECRETS, ServedApp

ECHO = "/clusters/echo"


async def fetch(
    app: ServedApp, path: str, user: str | None = "alice", **kwargs: Any
) -> HTTPResponse:
    headers = dict(kwargs.pop("headers", {}))
    if user:
        headers["X-Test-User"] = user
    return await AsyncHTTPClient().fetch(
        app.url + path,
        headers=headers,
        raise_error=False,
        follow_redirects=False,
        request_timeout=60,
        **kwargs,
    )


async def connect_ws(
    app: ServedApp, path: str, user: str = "alice", subprotocols: list[str] | None = None
) -> WebSocketClientConnection:
    request = HTTPRequest(
        "ws" + app.url[len("http") :] + path,
        headers={"X-Test-User": user, "Origin": app.url},
        request_timeout=60,
    )
    return await websocket_connect(request, subprotocols=subprotocols)


async def test_owner_gets_the_status_page_and_its_static_files(proxy_app: ServedApp) -> None:
    page = await fetch(proxy_app, f"{DASHBOARD}/status")
    assert page.code == 200, page.body
    assert page.headers["Content-Type"].startswith("text/html")
    text = page.body.decode()
    assert "Bokeh" in text
    # Bokeh's scripts come with absolute paths under the public prefix; the dashboard's
    # CSS with relative ones: both must load through the proxy.
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', text)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', text)
    assert any("bokeh.min.js" in src for src in scripts), scripts
    assert styles, text[:2000]
    for url in scripts + [f"{DASHBOARD}/{href}" for href in styles]:
        assert url.startswith(DASHBOARD + "/"), url
        asset = await fetch(proxy_app, url)
        assert asset.code == 200, (url, asset.code)
        assert len(asset.body) == int(asset.headers["Content-Length"]) > 0


async def test_admin_may_open_someone_elses_dashboard(proxy_app: ServedApp) -> None:
    response = await fetch(proxy_app, f"{DASHBOARD}/status", user="root")
    assert response.code == 200
    assert b"Bokeh" in response.body


async def test_another_user_is_refused(proxy_app: ServedApp) -> None:
    response = await fetch(proxy_app, f"{DASHBOARD}/status", user="bob")
    assert response.code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    assert b"This dashboard belongs to another user" in response.body
    assert b"Traceback" not in response.body

    as_json = await fetch(
        proxy_app, f"{DASHBOARD}/status", user="bob", headers={"Accept": "application/json"}
    )
    assert as_json.code == 403
    assert "belongs to another user" in json.loads(as_json.body)["error"]


async def test_another_user_cannot_open_the_websocket(proxy_app: ServedApp) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await connect_ws(proxy_app, f"{DASHBOARD}/status/ws", user="bob")
    assert refused.value.code == 403


async def test_no_credentials_is_401(proxy_app: ServedApp) -> None:
    response = await fetch(proxy_app, f"{DASHBOARD}/status", user=None)
    assert response.code == 401


@pytest.mark.parametrize("name", ["nosuchcluster", "nosuchcluster/status"])
async def test_unknown_cluster_is_404_with_a_readable_page(proxy_app: ServedApp, name: str) -> None:
    response = await fetch(proxy_app, f"/clusters/{name}", user="root")
    assert response.code == 404
    assert b"no running cluster named &#x27;nosuchcluster&#x27;" in response.body
    assert b"Traceback" not in response.body


async def test_dead_upstream_is_502(proxy_app: ServedApp) -> None:
    response = await fetch(proxy_app, "/clusters/dead/status")
    assert response.code == 502
    assert b"is not answering" in response.body
    assert b"Traceback" not in response.body
    post = await fetch(proxy_app, "/clusters/dead/api", method="POST", body=b"x" * 100)
    assert post.code == 502
    with pytest.raises(HTTPClientError) as failed:
        await connect_ws(proxy_app, "/clusters/dead/status/ws")
    assert failed.value.code == 502


async def test_post_reaches_the_real_scheduler(proxy_app: ServedApp) -> None:
    # The scheduler's own JSON API: retiring no workers answers an empty mapping.
    response = await fetch(
        proxy_app,
        f"{DASHBOARD}/api/v1/retire_workers",
        method="POST",
        body=json.dumps({"workers": []}),
    )
    assert response.code == 200, response.body
    assert json.loads(response.body) == {}


async def test_bokeh_websocket_delivers_the_document(proxy_app: ServedApp) -> None:
    page = await fetch(proxy_app, f"{DASHBOARD}/status")
    token = re.search(r'"token":"([^"]+)"', page.body.decode()).group(1)
    ws = await connect_ws(proxy_app, f"{DASHBOARD}/status/ws", subprotocols=["bokeh", token])
    try:
        assert ws.selected_subprotocol == "bokeh"
        ack = await read_bokeh_message(ws)
        assert ack["header"]["msgtype"] == "ACK"
        request = {"msgid": "test-1", "msgtype": "PULL-DOC-REQ"}
        for frame in (request, {}, {}):
            await ws.write_message(json.dumps(frame))
        # The live document may send PATCH-DOC updates before our reply.
        for _ in range(1000):
            reply = await read_bokeh_message(ws)
            if reply["header"]["msgtype"] != "PATCH-DOC":
                break
        assert reply["header"]["msgtype"] == "PULL-DOC-REPLY"
        assert reply["header"]["reqid"] == "test-1"
        assert reply["content"]["doc"]["roots"]
    finally:
        ws.close()


async def read_bokeh_message(ws: WebSocketClientConnection) -> dict[str, Any]:
    """One Bokeh protocol message: header, metadata, content, then buffer pairs."""
    parts = []
    for _ in range(3):
        frame = await ws.read_message()
        assert isinstance(frame, str), frame
        parts.append(json.loads(frame))
    header, metadata, content = parts
    buffers = []
    for _ in range(header.get("num_buffers", 0)):
        await ws.read_message()  # the buffer's header
        buffers.append(await ws.read_message())
    return {"header": header, "metadata": metadata, "content": content, "buffers": buffers}


async def test_request_details_pass_through(proxy_app: ServedApp) -> None:
    body = bytes(range(256)) * 20_000  # 5 MB, binary
    response = await fetch(
        proxy_app,
        f"{ECHO}/echo/a%20b?x=1&y=%2F&x=2",
        method="PUT",
        body=body,
        headers={
            "Cookie": "jupyterhub-session-id=secret",
            "Authorization": "token secret",
            "X-Custom": "kept",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "dropped",
            "X-Hubgate-Dashboard-Secret": "a guess",
        },
    )
    assert response.code == 200, response.body
    echoed = json.loads(response.body)
    headers = dict(echoed["headers"])
    assert echoed["method"] == "PUT"
    assert echoed["uri"] == f"{ECHO}/echo/a%20b?x=1&y=%2F&x=2"
    assert echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert headers["x-custom"] == "kept"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == proxy_app.url.removeprefix("http://")
    assert headers["host"] == proxy_app.url.removeprefix("http://")
    # The viewer's credentials and hop-by-hop headers stay on this side; the secret is
    # the proxy's, whatever the browser sent.
    for dropped in ("cookie", "authorization", "x-hop"):
        assert dropped not in headers
    assert [v for k, v in echoed["headers"] if k == "x-hubgate-dashboard-secret"] == [
        SECRETS["echo"]
    ]


async def test_chunked_post_body_streams_through(proxy_app: ServedApp) -> None:
    chunks = [bytes([i]) * 100_000 for i in range(30)]

    async def produce(write: Any) -> None:
        for chunk in chunks:
            await write(chunk)

    response = await fetch(proxy_app, f"{ECHO}/echo", method="POST", body_producer=produce)
    assert response.code == 200, response.body
    echoed = json.loads(response.body)
    assert echoed["body_length"] == sum(map(len, chunks))
    assert echoed["body_sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()


async def test_responses_pass_through_without_cookies_and_with_a_policy(
    proxy_app: ServedApp,
) -> None:
    redirect = await fetch(proxy_app, f"{ECHO}/redirect")
    assert redirect.code == 302
    assert redirect.headers["Location"] == "/somewhere/else?x=1"

    # A dashboard is the cluster owner's content: it sets no cookie in the viewer's
    # browser, and cannot be framed but by the hub nor post forms elsewhere.
    cookies = await fetch(proxy_app, f"{ECHO}/cookies")
    assert cookies.code == 200
    assert cookies.headers.get_list("Set-Cookie") == []
    policy = cookies.headers["Content-Security-Policy"]
    assert f"frame-ancestors {EMBEDDER}" in policy
    assert "form-action 'self'" in policy and "base-uri 'self'" in policy
    assert "connect-src 'self'" in policy

    chunks: list[bytes] = []
    big = await fetch(proxy_app, f"{ECHO}/big", streaming_callback=chunks.append)
    assert big.code == 200
    assert b"".join(chunks) == b"".join(bytes([i]) * 65536 for i in range(64))

    head = await fetch(proxy_app, f"{ECHO}/echo", method="HEAD")
    assert head.code == 200
    assert head.body == b""


async def test_websocket_text_binary_and_close_code(proxy_app: ServedApp) -> None:
    ws = await connect_ws(proxy_app, f"{ECHO}/ws", subprotocols=["first", "second"])
    try:
        assert ws.selected_subprotocol == "first"
        await ws.write_message("hello")
        assert await ws.read_message() == "hello"
        payload = bytes(range(256)) * 4096
        await ws.write_message(payload, binary=True)
        assert await ws.read_message() == payload
        await ws.write_message("close 4001 done here")
        assert await ws.read_message() is None
        assert ws.close_code == 4001
        assert ws.close_reason == "done here"
    finally:
        ws.close()  # closed by the server too, but only close() releases the client side


async def test_the_scheduler_refuses_requests_without_the_secret(
    proxy_app: ServedApp, dashboard_address: str
) -> None:
    client = AsyncHTTPClient()
    for headers in ({}, {"X-Hubgate-Dashboard-Secret": "a guess"}):
        direct = await client.fetch(
            f"{dashboard_address}{DASHBOARD}/health", headers=headers, raise_error=False
        )
        assert direct.code == 403
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(f"ws{dashboard_address[4:]}{DASHBOARD}/status/ws")
    assert refused.value.code == 403
    # The proxy presents it.
    health = await fetch(proxy_app, f"{DASHBOARD}/health")
    assert (health.code, health.body) == (200, b"ok")


async def test_websocket_from_another_origin_is_refused(proxy_app: ServedApp) -> None:
    request = HTTPRequest(
        "ws" + proxy_app.url[len("http") :] + f"{ECHO}/ws",
        headers={"X-Test-User": "alice", "Origin": "http://elsewhere.example.org"},
        request_timeout=60,
    )
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(request)
    assert refused.value.code == 403
