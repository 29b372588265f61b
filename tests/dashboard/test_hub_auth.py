"""The JupyterHub side of the clusters page: a browser without a hub cookie is sent to
the hub's OAuth login; the dashboard access rule in one function. (The dashboard entry
on the service's origin is tested end to end: tests/e2e/test_dashboard_origin.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlparse

import pytest
from tornado import web
from tornado.httpclient import AsyncHTTPClient

from hubgate.hub_service.dashboard_proxy import check_dashboard_access
from hubgate.hub_service.pages import page_routes

from .conftest import SERVICE_PREFIX, make_hub_auth, serve


@pytest.fixture
async def hub_app() -> AsyncIterator[str]:
    settings = {"hub_auth": make_hub_auth(), "cookie_secret": "z" * 32}
    server, url = await serve(page_routes(SERVICE_PREFIX), settings)
    yield url
    server.stop()


async def test_browser_without_cookie_goes_to_hub_login(hub_app: str) -> None:
    response = await AsyncHTTPClient().fetch(
        f"{hub_app}{SERVICE_PREFIX}", follow_redirects=False, raise_error=False
    )
    assert response.code == 302
    location = urlparse(response.headers["Location"])
    assert location.path == "/hub/api/oauth2/authorize"
    query = parse_qs(location.query)
    assert query["client_id"] == ["service-dask-gateway"]
    assert query["redirect_uri"] == [f"{SERVICE_PREFIX}oauth_callback"]
    assert query["state"]
    # The state cookie remembers where to come back to.
    assert any("state" in c for c in response.headers.get_list("Set-Cookie"))


@pytest.mark.parametrize(
    ("owner", "viewer", "admin", "code"),
    [
        ("alice", "alice", False, None),
        ("alice", "root", True, None),
        ("alice", "bob", False, 403),
        (None, "alice", False, 404),
        (None, "root", True, 404),
    ],
)
def test_access_rule(owner: str | None, viewer: str, admin: bool, code: int | None) -> None:
    if code is None:
        check_dashboard_access("c", owner, viewer, admin)
        return
    with pytest.raises(web.HTTPError) as refused:
        check_dashboard_access("c", owner, viewer, admin)
    assert refused.value.status_code == code
