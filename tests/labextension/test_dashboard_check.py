"""dask-labextension's dashboard check of hubgate's dashboard links (dashboard_check.py),
in a jupyter server with dask-labextension and hubgate's extension both loaded."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from hubgate.labextension.dashboard_check import cluster_behind

SERVER_TOKEN = "single-user-server-token"
SERVICE = "https://hub.example.org/services/dask-gateway"
PLOTS = [
    {"title": "Individual Progress", "path": "individual-progress"},
    {"title": "Individual Task Stream", "path": "individual-task-stream"},
]


@pytest.mark.parametrize(
    "url",
    [
        f"{SERVICE}/clusters/abc123/status",
        f"{SERVICE}/clusters/abc123",
        f"{SERVICE}/clusters/abc123/",
        f"{SERVICE}/clusters/abc123/status/",
        "HTTPS://HUB.example.org:443/services/dask-gateway/clusters/abc123",
    ],
)
def test_links_to_the_service_name_their_cluster(url: str) -> None:
    assert cluster_behind(url, [SERVICE]) == "abc123"


@pytest.mark.parametrize(
    "url",
    [
        # another host, scheme or port
        "https://evil.example.org/services/dask-gateway/clusters/abc123/status",
        "http://hub.example.org/services/dask-gateway/clusters/abc123/status",
        "https://hub.example.org:8443/services/dask-gateway/clusters/abc123/status",
        # another path on the hub, or a page below the dashboard
        "https://hub.example.org/services/other/clusters/abc123/status",
        f"{SERVICE}/clusters/abc123/individual-task-stream",
        f"{SERVICE}/clusters/../api/hubgate/clusters",
        f"{SERVICE}/clusters/",
        # a query or fragment (dask-labextension would add it to every plot URL)
        f"{SERVICE}/clusters/abc123/status?token=x",
        f"{SERVICE}/clusters/abc123#x",
        # relative links and junk
        "/services/dask-gateway/clusters/abc123/status",
        "https://hub.example.org:notaport/services/dask-gateway/clusters/abc123",
    ],
)
def test_other_urls_are_not_hubgate_links(url: str) -> None:
    assert cluster_behind(url, [SERVICE]) is None


def test_the_public_address_and_the_address_both_count() -> None:
    internal = "http://hubgate.internal:8081/services/dask-gateway"
    assert cluster_behind(f"{internal}/clusters/x1/status", [SERVICE, internal]) == "x1"
    assert cluster_behind(f"{internal}/clusters/x1/status", [SERVICE]) is None
    assert cluster_behind(f"{SERVICE}/clusters/x1/status", []) is None


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    # Both extensions, as a DaskHub image has them; hubgate's loads after dask's.
    return {
        "ServerApp": {
            "jpserver_extensions": {"dask_labextension": True, "hubgate.labextension": True}
        }
    }


@pytest.fixture
def service(fake_service: Any, upstream: Any) -> Any:
    upstream.address = fake_service.address
    upstream.public_address = ""
    upstream.api_token = SERVER_TOKEN
    return fake_service


def check(run: Any, jp_fetch: Any, url: str) -> dict[str, Any]:
    # The lab sends the URL encodeURIComponent-ed as one path segment.
    response = run(jp_fetch("dask", "dashboard-check", quote(url, safe="")))
    assert response.code == 200
    return json.loads(response.body)


def test_the_owners_link_is_checked_with_the_service_and_the_servers_token(
    run: Any, service: Any, jp_fetch: Any
) -> None:
    service.reply(
        "GET", "/services/dask-gateway/api/hubgate/clusters/abc123/plots", 200, {"plots": PLOTS}
    )
    link = f"{service.address}/clusters/abc123"
    assert check(run, jp_fetch, link + "/status") == {
        "url": link,
        "isActive": True,
        "effectiveUrl": None,
        "plots": {
            "Individual Progress": "/individual-progress",
            "Individual Task Stream": "/individual-task-stream",
        },
    }
    [seen] = service.requests
    assert seen.authorization == f"token {SERVER_TOKEN}"


@pytest.mark.parametrize("status", [403, 404, 409, 502])
def test_a_refusal_of_the_service_is_an_inactive_dashboard(
    run: Any, service: Any, jp_fetch: Any, status: int
) -> None:
    service.reply(
        "GET",
        "/services/dask-gateway/api/hubgate/clusters/abc123/plots",
        status,
        {"error": "User bob lacks permissions to list the plots of cluster abc123"},
    )
    link = f"{service.address}/clusters/abc123"
    assert check(run, jp_fetch, link + "/status") == {
        "url": link,
        "isActive": False,
        "plots": {},
    }


def test_an_unreachable_service_is_an_inactive_dashboard(
    run: Any, upstream: Any, unused_address: str, jp_fetch: Any
) -> None:
    upstream.address = unused_address
    upstream.api_token = SERVER_TOKEN
    result = check(run, jp_fetch, f"{unused_address}/clusters/abc123/status")
    assert result["isActive"] is False


def test_other_dashboards_are_checked_by_dask_labextension_without_the_token(
    run: Any, service: Any, jp_fetch: Any
) -> None:
    # A dashboard elsewhere (here on the same host, outside the service's prefix) is
    # fetched by dask-labextension's own handler: the server's token never goes there.
    other = service.address.replace("/services/dask-gateway", "/proxy/8787")
    service.reply(
        "GET",
        "/proxy/8787/individual-plots.json",
        200,
        {"Individual Task Stream": "/individual-task-stream"},
    )
    result = check(run, jp_fetch, f"{other}/status")
    assert result["isActive"] is True
    assert result["plots"] == {"Individual Task Stream": "/individual-task-stream"}
    [seen] = service.requests
    assert seen.path == "/proxy/8787/individual-plots.json"
    assert seen.authorization is None


def test_the_check_needs_the_servers_auth(run: Any, service: Any, jp_fetch: Any) -> None:
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as info:
        run(
            jp_fetch(
                "dask",
                "dashboard-check",
                quote(f"{service.address}/clusters/abc123/status", safe=""),
                headers={"Authorization": ""},
            )
        )
    assert info.value.code == 403
    assert service.requests == []


def test_the_public_address_defaults_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hubgate.labextension.upstream import HubgateUpstream

    monkeypatch.setenv("DASK_GATEWAY__ADDRESS", "http://hubgate.internal:8081/services/dg")
    monkeypatch.setenv("DASK_GATEWAY__PUBLIC_ADDRESS", SERVICE)
    assert HubgateUpstream().dashboard_addresses() == [
        SERVICE,
        "http://hubgate.internal:8081/services/dg",
    ]
    monkeypatch.delenv("DASK_GATEWAY__PUBLIC_ADDRESS")
    assert HubgateUpstream().dashboard_addresses() == ["http://hubgate.internal:8081/services/dg"]
