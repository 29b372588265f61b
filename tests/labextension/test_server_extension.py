"""The server extension's handlers: forwarding, auth, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

SERVICE_TOKEN = "single-user-server-token"

CLUSTER = {
    "name": "abc",
    "owner": "alice",
    "status": "RUNNING",
    "reason": None,
    "workers": {"requested": 1, "running": 1, "pending": 0},
    "dashboard_url": "/services/dask-gateway/clusters/abc",
}


@pytest.fixture
def service(fake_service: Any, upstream: Any) -> Any:
    upstream.address = fake_service.address
    upstream.api_token = SERVICE_TOKEN
    return fake_service


def test_get_is_forwarded_with_the_servers_token(run: Any, service: Any, jp_fetch: Any) -> None:
    service.reply(
        "GET", "/services/dask-gateway/api/hubgate/clusters", 200, {"clusters": [CLUSTER]}
    )
    response = run(jp_fetch("hubgate", "clusters", params={"status": "running,pending"}))
    assert response.code == 200
    assert json.loads(response.body) == {"clusters": [CLUSTER]}
    [seen] = service.requests
    assert seen.authorization == f"token {SERVICE_TOKEN}"
    assert seen.query == "status=running%2Cpending"


def test_post_body_and_status_are_passed_both_ways(run: Any, service: Any, jp_fetch: Any) -> None:
    service.reply("POST", "/services/dask-gateway/api/hubgate/clusters", 201, CLUSTER)
    body = {"options": {"worker_cores": 2}, "shutdown_on_close": False, "lease_seconds": None}
    response = run(
        jp_fetch(
            "hubgate",
            "clusters",
            method="POST",
            body=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
    )
    assert response.code == 201
    assert json.loads(response.body)["name"] == "abc"
    [seen] = service.requests
    assert json.loads(seen.body) == body
    assert seen.content_type == "application/json"


def test_delete_is_forwarded(run: Any, service: Any, jp_fetch: Any) -> None:
    service.reply(
        "DELETE",
        "/services/dask-gateway/api/hubgate/clusters/abc",
        202,
        {**CLUSTER, "status": "STOPPING"},
    )
    response = run(jp_fetch("hubgate", "clusters", "abc", method="DELETE"))
    assert response.code == 202
    assert json.loads(response.body)["status"] == "STOPPING"
    assert [r.method for r in service.requests] == ["DELETE"]


def test_service_errors_pass_through_with_status(run: Any, service: Any, jp_fetch: Any) -> None:
    message = "worker_cores must be at most 4, got 10"
    service.reply("POST", "/services/dask-gateway/api/hubgate/clusters", 422, {"error": message})
    with pytest.raises(HTTPClientError) as info:
        run(
            jp_fetch(
                "hubgate",
                "clusters",
                method="POST",
                body=json.dumps({"options": {"worker_cores": 10}}),
            )
        )
    assert info.value.code == 422
    assert json.loads(info.value.response.body) == {"error": message}


def test_non_json_error_becomes_a_json_message(run: Any, service: Any, jp_fetch: Any) -> None:
    service.reply(
        "GET",
        "/services/dask-gateway/api/hubgate/whoami",
        503,
        b"<html>Bad gateway</html>",
        "text/html",
    )
    with pytest.raises(HTTPClientError) as info:
        run(jp_fetch("hubgate", "whoami"))
    assert info.value.code == 503
    error = json.loads(info.value.response.body)["error"]
    assert error.startswith("The hubgate service answered 503")


def test_unreachable_service_is_a_502_that_says_so(
    run: Any, upstream: Any, unused_address: str, jp_fetch: Any
) -> None:
    upstream.address = unused_address
    upstream.api_token = SERVICE_TOKEN
    with pytest.raises(HTTPClientError) as info:
        run(jp_fetch("hubgate", "clusters"))
    assert info.value.code == 502
    error = json.loads(info.value.response.body)["error"]
    assert f"The hubgate service at {unused_address} is unreachable" in error


def test_missing_address_is_explained(run: Any, upstream: Any, jp_fetch: Any) -> None:
    upstream.address = ""
    upstream.api_token = SERVICE_TOKEN
    with pytest.raises(HTTPClientError) as info:
        run(jp_fetch("hubgate", "options"))
    assert info.value.code == 503
    assert "DASK_GATEWAY__ADDRESS" in json.loads(info.value.response.body)["error"]


def test_missing_token_is_explained(
    run: Any, fake_service: Any, upstream: Any, jp_fetch: Any
) -> None:
    upstream.address = fake_service.address
    upstream.api_token = ""
    with pytest.raises(HTTPClientError) as info:
        run(jp_fetch("hubgate", "options"))
    assert info.value.code == 503
    assert "JUPYTERHUB_API_TOKEN" in json.loads(info.value.response.body)["error"]
    assert fake_service.requests == []


def test_requests_without_auth_are_refused(run: Any, service: Any, jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as info:
        run(jp_fetch("hubgate", "clusters", headers={"Authorization": ""}))
    assert info.value.code == 403
    assert service.requests == []


def test_paths_escaping_the_api_are_refused(run: Any, service: Any, jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as info:
        run(jp_fetch("hubgate", "clusters", "..%2F..%2Fadmin"))
    assert info.value.code == 404
    assert service.requests == []


def test_address_and_token_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from hubgate.labextension.upstream import HubgateUpstream

    monkeypatch.setenv("DASK_GATEWAY__ADDRESS", "http://hub:8000/services/dask-gateway/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "abc123")
    upstream = HubgateUpstream()
    assert upstream.api_token == "abc123"
    assert (
        upstream.url_for("clusters/x")
        == "http://hub:8000/services/dask-gateway/api/hubgate/clusters/x"
    )


def test_extension_points_name_the_module() -> None:
    import hubgate.labextension as ext

    assert ext._jupyter_server_extension_points() == [{"module": "hubgate.labextension"}]
    [path] = ext._jupyter_labextension_paths()
    assert path["dest"] == "hubgate-labextension"
