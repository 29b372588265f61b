"""Admin powers are a scope on the token, and admins never get another user's
credentials; the service's session cookie is Secure over https and never authorises a
change (issue #10, items 8 and 9). Everything goes through the real hub."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from hubgate.hub_service.auth import ADMIN_SCOPE, SESSION_COOKIE
from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.service_api import ServiceApi, check_with_openapi
from tests.fixtures.hub import gateway_env, run_python

pytestmark = pytest.mark.slow

ACCESS = "access:services!service=dask-gateway"


@pytest.fixture(scope="module")
def api(hub: RunningHub) -> ServiceApi:
    return ServiceApi(hub)


@pytest.fixture(scope="module")
def alices(api: ServiceApi) -> Iterator[str]:
    """A running cluster of alice's with one worker requested."""
    name = api.create_cluster("alice")["name"]
    try:
        api.ok("POST", f"/api/hubgate/clusters/{name}/scale", {"count": 1}, user="alice")
        api.wait_running(name, "alice")
        yield name
    finally:
        api.stop_and_wait(name)


def as_token(api: ServiceApi, token: str, method: str, path: str, body: object = None) -> object:
    return api.request(method, path, body, authorization=f"token {token}")


def unchanged(api: ServiceApi, name: str, before: dict[str, object]) -> None:
    after = api.cluster(name, "alice")
    assert after["status"] == "RUNNING", after
    assert after["workers"]["requested"] == before["workers"]["requested"]  # type: ignore[index]
    assert after["adaptive"] == before["adaptive"]


# --- item 8: the admin scope ------------------------------------------------------------


def test_a_narrow_token_of_an_admin_is_not_an_admin_token(
    api: ServiceApi, hub: RunningHub, alices: str
) -> None:
    narrow = hub.make_token("admin", scopes=[ACCESS], note="narrow")
    before = api.cluster(alices, "alice")
    assert as_token(api, narrow, "GET", "/api/hubgate/whoami").data["admin"] is False

    reply = as_token(api, narrow, "GET", "/api/hubgate/clusters?all_users=1")
    assert reply.status == 403
    check_with_openapi("GET", "/api/hubgate/clusters?all_users=1", reply)
    assert reply.error == "Only admins may list all users' clusters; admin is not an admin"

    for method, path, body, action in [
        ("GET", "/api/v1/clusters/{}", None, "view"),
        ("GET", "/api/hubgate/clusters/{}", None, "view"),
        ("POST", "/api/v1/clusters/{}/scale", {"count": 3}, "scale"),
        ("POST", "/api/hubgate/clusters/{}/scale", {"count": 3}, "scale"),
        ("POST", "/api/hubgate/clusters/{}/adapt", {"maximum": 3}, "adapt"),
        ("DELETE", "/api/v1/clusters/{}", None, "stop"),
        ("DELETE", "/api/hubgate/clusters/{}", None, "stop"),
    ]:
        reply = as_token(api, narrow, method, path.format(alices), body)
        assert reply.status == 403, (method, path, reply.status, reply.text)
        check_with_openapi(method, path.format(alices), reply)
        assert reply.error == f"User admin lacks permissions to {action} cluster {alices}"
    dashboard = as_token(api, narrow, "GET", f"/clusters/{alices}/status")
    assert dashboard.status == 403, dashboard.text[:300]
    unchanged(api, alices, before)

    # The same person with the scope on the token is an admin.
    scoped = hub.make_token("admin", scopes=[ACCESS, ADMIN_SCOPE], note="admin")
    assert as_token(api, scoped, "GET", "/api/hubgate/whoami").data["admin"] is True
    everyone = as_token(api, scoped, "GET", "/api/hubgate/clusters?all_users=1")
    assert everyone.status == 200, everyone.text
    assert {c["name"]: c["owner"] for c in everyone.data["clusters"]}[alices] == "alice"
    scaled = as_token(api, scoped, "POST", f"/api/hubgate/clusters/{alices}/scale", {"count": 2})
    assert scaled.status == 200, scaled.text
    assert api.cluster(alices, "alice")["workers"]["requested"] == 2
    api.ok("POST", f"/api/hubgate/clusters/{alices}/scale", {"count": 1}, user="alice")


def test_a_hub_admin_without_the_role_is_not_a_service_admin(
    api: ServiceApi, hub: RunningHub, alices: str
) -> None:
    """The hub record's admin flag gives nothing: only the scope does."""
    name = "hubadmin-norole"
    hub.api("POST", f"/users/{name}", {"admin": True}, token=hub.tokens["admin"])
    try:
        assert hub.api("GET", f"/users/{name}")["admin"] is True
        token = hub.make_token(name, note="full token of a hub admin")
        assert as_token(api, token, "GET", "/api/hubgate/whoami").data == {
            "name": name,
            "admin": False,
            "groups": [],
        }
        reply = as_token(api, token, "GET", "/api/hubgate/clusters?all_users=1")
        assert reply.status == 403, reply.text
        reply = as_token(api, token, "DELETE", f"/api/hubgate/clusters/{alices}")
        assert reply.error == f"User {name} lacks permissions to stop cluster {alices}"
        assert api.cluster(alices, "alice")["status"] == "RUNNING"
    finally:
        hub.api("DELETE", f"/users/{name}", token=hub.tokens["admin"])


def _hub_refusal(exc: urllib.error.HTTPError) -> str:
    assert exc.code == 400, exc
    return json.loads(exc.read())["message"]


def test_the_hub_refuses_the_admin_scope_to_non_admins(api: ServiceApi, hub: RunningHub) -> None:
    refusal = f"Not assigning requested scopes {ADMIN_SCOPE} not held by User bob"
    # Asked for by a service that may make tokens for anyone...
    with pytest.raises(urllib.error.HTTPError) as refused:
        hub.make_token("bob", scopes=[ACCESS, ADMIN_SCOPE], note="escalation")
    assert _hub_refusal(refused.value) == refusal
    # ...and by bob himself, with his full token.
    with pytest.raises(urllib.error.HTTPError) as refused:
        hub.api("POST", "/users/bob/tokens", {"scopes": [ADMIN_SCOPE]}, token=hub.tokens["bob"])
    assert _hub_refusal(refused.value) == refusal
    # bob's own full token does not carry it either.
    assert as_token(api, hub.tokens["bob"], "GET", "/api/hubgate/whoami").data["admin"] is False


def _cluster_token(hub: RunningHub, name: str) -> str:
    """The cluster's secret token, as its scheduler reads it from its credentials."""
    work_dir = hub.settings.clusters_dir or hub.settings.work_dir / "clusters"
    found = [p for p in work_dir.rglob("token") if name in p.parts]
    assert len(found) == 1, found
    token = found[0].read_text().strip()
    assert len(token) >= 32
    return token


def test_admin_sees_alices_cluster_but_not_her_credentials(
    api: ServiceApi, hub: RunningHub, alices: str
) -> None:
    own = api.ok("GET", f"/api/v1/clusters/{alices}", user="alice")
    assert own["tls_key"] and "BEGIN" in own["tls_key"] and own["tls_cert"]
    secrets = [own["tls_key"], _cluster_token(hub, alices)]
    # the lines of the key, in case some encoding split it
    secrets += [line for line in own["tls_key"].splitlines() if len(line) > 40]

    v1 = api.ok("GET", f"/api/v1/clusters/{alices}", user="admin")
    assert v1["status"] == "RUNNING" and v1["name"] == alices
    assert v1["tls_key"] is None and v1["tls_cert"] is None
    rich = api.ok("GET", f"/api/hubgate/clusters/{alices}", user="admin")
    assert rich["owner"] == "alice" and rich["status"] == "RUNNING"
    everyone = api.ok("GET", "/api/hubgate/clusters?all_users=1", user="admin")
    assert alices in {c["name"] for c in everyone["clusters"]}
    scaled = api.ok("POST", f"/api/v1/clusters/{alices}/scale", {"count": 1}, user="admin")
    for reply in (v1, rich, everyone, scaled):
        text = json.dumps(reply)
        assert "BEGIN" not in text and "PRIVATE" not in text
        for secret in secrets:
            assert secret not in text

    # dask-gateway's client connects with GET ?wait: a 403 that says why.
    reply = api.request("GET", f"/api/v1/clusters/{alices}?wait", user="admin")
    assert reply.status == 403
    check_with_openapi("GET", f"/api/v1/clusters/{alices}?wait", reply)
    assert "BEGIN" not in reply.text
    assert reply.error == (
        f"Cluster {alices} belongs to alice: as an admin you may view, scale and stop it "
        "and open its dashboard, but not connect to it (only its owner gets its credentials)"
    )


def test_official_client_as_admin_views_but_cannot_connect(
    hub: RunningHub, alices: str, tmp_path: Path
) -> None:
    out = run_python(
        f"""
        import aiohttp
        from dask_gateway import Gateway

        gateway = Gateway()
        report = gateway.get_cluster({alices!r})
        print("status", report.status.name, report.security)
        try:
            gateway.connect({alices!r})
        except aiohttp.ClientResponseError as exc:
            print("refused", exc.status, exc.message)
        else:
            print("connected")
        gateway.close()
        """,
        gateway_env(hub, "admin"),
        tmp_path,
    )
    assert "status RUNNING None" in out, out
    assert (
        f"refused 403 Cluster {alices} belongs to alice: as an admin you may view, scale "
        "and stop it and open its dashboard, but not connect to it" in out
    ), out


def test_hubgate_client_as_admin_cannot_connect(
    hub: RunningHub, alices: str, tmp_path: Path
) -> None:
    out = run_python(
        f"""
        from hubgate import Gateway
        from hubgate.client import GatewayAuthError

        gateway = Gateway()
        assert {alices!r} in [c.name for c in gateway.list_clusters(all_users=True)]
        try:
            gateway.connect({alices!r})
        except GatewayAuthError as exc:
            print("refused", exc.status, exc.message)
        else:
            print("connected")
        gateway.close()
        """,
        gateway_env(hub, "admin"),
        tmp_path,
    )
    assert "refused 403" in out and "but not connect to it" in out, out


# --- item 9: the session cookie -----------------------------------------------------------


def _session_cookie(reply: object) -> SimpleCookie:
    cookies = SimpleCookie()
    for header in reply.headers.get_all("Set-Cookie") or []:  # type: ignore[attr-defined]
        cookies.load(header)
    assert SESSION_COOKIE in cookies, reply.headers  # type: ignore[attr-defined]
    return cookies


def test_session_cookie_is_secure_over_https_only(api: ServiceApi) -> None:
    plain = _session_cookie(api.request("GET", "/api/hubgate/whoami"))
    assert not plain[SESSION_COOKIE]["secure"]
    assert plain[SESSION_COOKIE]["httponly"] and plain[SESSION_COOKIE]["samesite"] == "Strict"
    # What a TLS-terminating front end in front of the hub's proxy says.
    https = _session_cookie(
        api.request("GET", "/api/hubgate/whoami", headers={"X-Forwarded-Proto": "https"})
    )
    assert https[SESSION_COOKIE]["secure"]


def test_session_cookie_alone_reads_but_never_changes(api: ServiceApi, alices: str) -> None:
    cookie = _session_cookie(api.request("GET", "/api/hubgate/whoami", user="alice"))
    header = {"Cookie": f"{SESSION_COOKIE}={cookie[SESSION_COOKIE].value}"}
    # Reads with the cookie alone work (what spares clients the 401 round trip)...
    read = api.request("GET", f"/api/hubgate/clusters/{alices}", user=None, headers=header)
    assert read.status == 200 and read.data["owner"] == "alice"
    before = read.data
    # ...changes do not: 401, so dask-gateway's client re-sends its token.
    for method, path, body in [
        ("POST", f"/api/v1/clusters/{alices}/scale", {"count": 3}),
        ("POST", f"/api/hubgate/clusters/{alices}/adapt", {"maximum": 3}),
        ("DELETE", f"/api/v1/clusters/{alices}", None),
        ("DELETE", f"/api/hubgate/clusters/{alices}", None),
    ]:
        reply = api.request(method, path, body, user=None, headers=header)
        assert reply.status == 401, (method, path, reply.status, reply.text)
        assert reply.headers["WWW-Authenticate"]
        assert reply.error.startswith(
            f"The {SESSION_COOKIE} cookie does not authorise {method} requests: send your "
            "JupyterHub API token as 'Authorization: token <token>'"
        )
    unchanged(api, alices, before)
