"""Fixtures for the jupyter-server extension: a jupyter server with it loaded, and a
small recording tornado app playing the hubgate service's ``api/hubgate`` (handler unit
tests only; end-to-end tests use the real service through tests/fixtures/hub.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import tornado.httpserver
import tornado.web

# pytest_plugins may only be set in the top-level conftest; importing the fixtures (and the
# async-test hooks) here registers them for this folder alone.
from pytest_jupyter.jupyter_server import *  # noqa: F403

# Keep pytest-asyncio in charge of async tests elsewhere: drop pytest-jupyter's hooks and
# give its server a loop of its own, restored afterwards (its own fixture closes whatever
# loop is current, which would be the session's). These tests are sync and drive the
# server's loop with ``run``.
del pytest_pycollect_makeitem, pytest_pyfunc_call  # noqa: F821


@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[asyncio.AbstractEventLoop]:
    policy = asyncio.get_event_loop_policy()
    try:
        previous = policy.get_event_loop()
    except RuntimeError:
        previous = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(previous)


@pytest.fixture
def run(jp_asyncio_loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[T]], T]:
    """Run a coroutine on the jupyter server's loop."""

    def runner(awaitable: Awaitable[T]) -> T:
        return jp_asyncio_loop.run_until_complete(awaitable)

    return runner


ROOT = Path(__file__).resolve().parents[2]


def _ensure_importable() -> None:
    """Until pyproject maps hubgate.labextension to labextension/server (and the editable
    install is refreshed), load it from the folder so the server can import it by name."""
    try:
        import hubgate.labextension  # noqa: F401
    except ImportError:
        init = ROOT / "labextension" / "server" / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            "hubgate.labextension", init, submodule_search_locations=[str(init.parent)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["hubgate.labextension"] = module
        spec.loader.exec_module(module)


_ensure_importable()

T = TypeVar("T")


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    authorization: str | None
    content_type: str | None
    body: bytes


@dataclass
class FakeService:
    """Replies chosen per test; every request it receives is recorded."""

    address: str
    requests: list[Recorded] = field(default_factory=list)
    replies: dict[tuple[str, str], tuple[int, str, bytes]] = field(default_factory=dict)

    def reply(
        self, method: str, path: str, status: int, body: Any, content_type: str = "application/json"
    ) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.replies[(method, path)] = (status, content_type, raw)


class _Recorder(tornado.web.RequestHandler):
    def initialize(self, service: FakeService) -> None:
        self.service = service

    def _handle(self) -> None:
        request = self.request
        self.service.requests.append(
            Recorded(
                method=request.method or "",
                path=request.path,
                query=request.query,
                authorization=request.headers.get("Authorization"),
                content_type=request.headers.get("Content-Type"),
                body=request.body,
            )
        )
        reply = self.service.replies.get((request.method or "", request.path))
        if reply is None:
            self.set_status(404)
            self.finish({"error": f"no reply scripted for {request.method} {request.path}"})
            return
        status, content_type, body = reply
        self.set_status(status)
        if body:
            self.set_header("Content-Type", content_type)
            self.finish(body)
        else:
            self.finish()

    get = post = delete = _handle  # type: ignore[assignment]

    def check_xsrf_cookie(self) -> None:
        return None


@pytest.fixture
def fake_service(jp_asyncio_loop: asyncio.AbstractEventLoop) -> Iterator[FakeService]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    service = FakeService(address=f"http://127.0.0.1:{port}/services/dask-gateway")
    app = tornado.web.Application([(r"/.*", _Recorder, {"service": service})])

    async def start() -> tornado.httpserver.HTTPServer:
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        return server

    server = jp_asyncio_loop.run_until_complete(start())
    yield service
    server.stop()
    jp_asyncio_loop.run_until_complete(server.close_all_connections())


@pytest.fixture
def jp_server_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"hubgate.labextension": True}}}


@pytest.fixture
def upstream(jp_serverapp: Any) -> Any:
    """The extension's upstream settings, to point at a fake or real service."""
    return jp_serverapp.web_app.settings["hubgate_upstream"]


@pytest.fixture
def unused_address() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/services/dask-gateway"
