"""An unexpected exception in a request handler: the caller gets a 500 (JSON, or a page)
that quotes an error id and nothing of the exception; the service log has the traceback
under that id, once. A backend's message for users is shown as it is."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from hubgate.hub_service.handlers_base import BaseHandler
from hubgate.hub_service.pages import ClustersPageHandler
from hubgate.spawners.base import BackendError

SECRET = "postgresql://hubgate:hunter2@db/hubgate"
ERROR_ID = re.compile(r"error id ([0-9a-f]{8})")


class BrokenHandler(BaseHandler):
    public = True

    def get(self) -> None:
        raise RuntimeError(f"cannot connect to {SECRET}")


class BackendRefusesHandler(BaseHandler):
    public = True

    def get(self) -> None:
        raise BackendError("Slurm refused the job: Invalid account or account/partition")


async def broken_page_user(handler: Any) -> None:
    raise KeyError(SECRET)


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = Application(
        [
            (r"/broken", BrokenHandler),
            (r"/backend", BackendRefusesHandler),
            (r"/page", ClustersPageHandler),
        ],
        hubgate_page_user=broken_page_user,
    )
    [sock] = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.stop()
    await server.close_all_connections()


async def _fetch(url: str) -> tuple[int, str]:
    client = AsyncHTTPClient(force_instance=True)
    try:
        await client.fetch(url)
    except HTTPClientError as exc:
        assert exc.response is not None
        return exc.code, exc.response.body.decode()
    finally:
        client.close()
    raise AssertionError(f"{url} did not fail")


def _logged_ids(caplog: pytest.LogCaptureFixture) -> list[tuple[str, logging.LogRecord]]:
    found = []
    for record in caplog.records:
        match = ERROR_ID.search(record.getMessage())
        if match:
            found.append((match.group(1), record))
    return found


async def test_unexpected_exception_is_a_json_500_with_the_logged_id(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="hubgate.errors")
    status, body = await _fetch(base_url + "/broken")
    assert status == 500
    message = json.loads(body)["error"]
    assert "hunter2" not in body and "RuntimeError" not in body and "Traceback" not in body
    assert message.startswith("The service hit an unexpected error while handling this request")
    assert "an administrator can find the details in the service log" in message
    [(error_id, record)] = _logged_ids(caplog)
    assert f"error id {error_id}" in message
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "GET /broken" in record.getMessage()


async def test_backend_message_reaches_the_caller(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hubgate.errors")
    status, body = await _fetch(base_url + "/backend")
    assert status == 500
    assert json.loads(body) == {
        "error": "Slurm refused the job: Invalid account or account/partition"
    }
    assert _logged_ids(caplog) == []


async def test_unexpected_exception_on_a_page_shows_only_the_id(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="hubgate.errors")
    status, body = await _fetch(base_url + "/page")
    assert status == 500
    assert "hunter2" not in body and "KeyError" not in body
    [(error_id, record)] = _logged_ids(caplog)
    assert f"error id {error_id}" in body
    assert record.exc_info is not None and record.exc_info[0] is KeyError
