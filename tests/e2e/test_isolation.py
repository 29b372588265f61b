"""Users are isolated from each other: bob can neither see, change, connect to nor
watch alice's cluster (API, scheduler proxy, dashboard); admins see and stop everyone's."""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.dashboard_client import open_dashboard
from tests.e2e.service_api import ALL_STATUSES, ServiceApi, check_with_openapi

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(hub: RunningHub) -> ServiceApi:
    return ServiceApi(hub)


@pytest.fixture(scope="module")
def clusters(api: ServiceApi) -> Iterator[dict[str, str]]:
    """A running cluster for alice and one for bob."""
    names: dict[str, str] = {}
    try:
        for user in ("alice", "bob"):
            names[user] = api.create_cluster(user)["name"]
        for user, name in names.items():
            api.wait_running(name, user)
        yield names
    finally:
        for name in names.values():
            api.stop_and_wait(name)


def forbidden(api: ServiceApi, method: str, path: str, body: object = None) -> str:
    reply = api.request(method, path, body, user="bob")
    assert reply.status == 403, f"{method} {path}: {reply.status} {reply.text}"
    check_with_openapi(method, path, reply)
    assert "tls_cert" not in reply.text and "BEGIN" not in reply.text
    return reply.error


def test_bob_does_not_see_alices_cluster_in_lists(
    api: ServiceApi, clusters: dict[str, str]
) -> None:
    alice, bob = clusters["alice"], clusters["bob"]
    for status in ("", f"?status={ALL_STATUSES}"):
        v1 = api.ok("GET", f"/api/v1/clusters/{status}", user="bob")
        assert bob in v1 and alice not in v1
        rich = api.ok("GET", f"/api/hubgate/clusters{status}", user="bob")
        owners = {c["name"]: c["owner"] for c in rich["clusters"]}
        assert owners[bob] == "bob" and alice not in owners
        assert set(owners.values()) == {"bob"}


@pytest.mark.parametrize(
    ("method", "path", "body", "action"),
    [
        ("GET", "/api/v1/clusters/{}", None, "view"),
        ("GET", "/api/v1/clusters/{}?wait", None, "view"),
        ("POST", "/api/v1/clusters/{}/scale", {"count": 3}, "scale"),
        ("POST", "/api/v1/clusters/{}/adapt", {"minimum": 1, "maximum": 3}, "adapt"),
        ("DELETE", "/api/v1/clusters/{}", None, "stop"),
        ("GET", "/api/hubgate/clusters/{}", None, "view"),
        ("POST", "/api/hubgate/clusters/{}/scale", {"count": 3}, "scale"),
        ("POST", "/api/hubgate/clusters/{}/adapt", {"maximum": 3}, "adapt"),
        ("POST", "/api/hubgate/clusters/{}/lease", {"seconds": 1}, "renew the lease of"),
        ("GET", "/api/hubgate/clusters/{}/logs", None, "read the logs of"),
        ("DELETE", "/api/hubgate/clusters/{}", None, "stop"),
    ],
)
def test_bob_cannot_touch_alices_cluster(
    api: ServiceApi,
    clusters: dict[str, str],
    method: str,
    path: str,
    body: object,
    action: str,
) -> None:
    alice = clusters["alice"]
    before = api.cluster(alice, "alice")
    message = forbidden(api, method, path.format(alice), body)
    assert message == f"User bob lacks permissions to {action} cluster {alice}"
    after = api.cluster(alice, "alice")
    assert after["status"] == "RUNNING"
    assert after["workers"] == before["workers"]
    assert after["adaptive"] == before["adaptive"]
    assert after["lease_expires"] == before["lease_expires"]


def test_non_admin_cannot_list_all_users(api: ServiceApi) -> None:
    for user in ("alice", "bob"):
        reply = api.request("GET", "/api/hubgate/clusters?all_users=1", user=user)
        assert reply.status == 403
        check_with_openapi("GET", "/api/hubgate/clusters?all_users=1", reply)
        assert reply.error == f"Only admins may list all users' clusters; {user} is not an admin"


# --- the dashboard ----------------------------------------------------------------------


def test_dashboard_only_for_owner_and_admin(api: ServiceApi, clusters: dict[str, str]) -> None:
    alice = clusters["alice"]
    path = f"/clusters/{alice}/status"
    # The owner goes straight through; an admin confirms first (a POST).
    for user, confirm in (("alice", False), ("admin", True)):
        reply = open_dashboard(api.base + path, api.hub.tokens[user], confirm=confirm)
        text = reply.body.decode()
        assert reply.code == 200, (user, reply.code, text[:300])
        assert "text/html" in reply.headers["Content-Type"] and "bokeh" in text.lower()
    confirmation = api.request("GET", path, user="admin")
    assert confirmation.status == 200 and "as an admin?" in confirmation.text
    page = api.request("GET", path, user="bob", headers={"Accept": "text/html"})
    assert page.status == 403
    assert "belongs to another user" in page.text and "Traceback" not in page.text
    as_json = api.request("GET", path, user="bob", headers={"Accept": "application/json"})
    assert as_json.status == 403
    assert as_json.error == (
        "This dashboard belongs to another user. Only the cluster's owner and hub "
        "admins can open it."
    )
    # Nor any other URL of the dashboard, e.g. its JSON or Bokeh's script.
    for sub in ("json/identity.json", "individual-plots.json", "autoload.js"):
        reply = api.request("GET", f"/clusters/{alice}/{sub}", user="bob")
        assert reply.status == 403, (sub, reply.status)


# --- the scheduler proxy ------------------------------------------------------------------


def _v1_credentials(api: ServiceApi, name: str, user: str) -> tuple[str, str]:
    cluster = api.ok("GET", f"/api/v1/clusters/{name}", user=user)
    assert cluster["tls_cert"] and cluster["tls_key"], cluster
    return cluster["tls_cert"], cluster["tls_key"]


def _first_bytes(
    port: int, cluster: str, credentials: tuple[str, str] | None, verify_server: bool
) -> bytes:
    """Connect to the scheduler proxy as dask-gateway's client does (TLS, SNI
    ``daskgateway-<cluster>``, the cluster PEM as trust store and client certificate),
    and read what the scheduler sends first (distributed's handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED if verify_server else ssl.CERT_NONE
    with tempfile.TemporaryDirectory() as folder:
        if credentials is not None:
            cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            cert.write_text(credentials[0])
            fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(credentials[1])
            context.load_cert_chain(cert, key)
            if verify_server:
                context.load_verify_locations(cafile=cert)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
        with context.wrap_socket(raw, server_hostname=f"daskgateway-{cluster}") as tls:
            return tls.recv(64)


def _refused(port: int, cluster: str, credentials: tuple[str, str] | None, verify: bool) -> str:
    """The TLS alert the scheduler answered with; fails if it sent any data."""
    try:
        data = _first_bytes(port, cluster, credentials, verify)
    except ssl.SSLError as exc:
        return str(exc)
    raise AssertionError(f"the scheduler of {cluster} answered: {data!r}")


def test_scheduler_proxy_keeps_bob_out_of_alices_scheduler(
    api: ServiceApi, hub: RunningHub, clusters: dict[str, str]
) -> None:
    port = hub.settings.scheduler_proxy_port
    alice, bob = clusters["alice"], clusters["bob"]
    alice_creds = _v1_credentials(api, alice, "alice")
    bob_creds = _v1_credentials(api, bob, "bob")
    assert alice_creds != bob_creds

    # The same procedure reaches each scheduler with its own cluster's credentials.
    assert _first_bytes(port, alice, alice_creds, verify_server=True)
    assert _first_bytes(port, bob, bob_creds, verify_server=True)

    # bob names alice's cluster in the SNI, with his own cluster's certificate: as the
    # official client does it, alice's scheduler certificate is not trusted...
    with pytest.raises(ssl.SSLCertVerificationError):
        _first_bytes(port, alice, bob_creds, verify_server=True)
    # ...and skipping that check does not help: alice's scheduler refuses bob's
    # certificate (another cluster's CA) and sends nothing.
    assert "UNKNOWN_CA" in _refused(port, alice, bob_creds, verify=False)
    # Nor without any client certificate.
    assert "CERTIFICATE_REQUIRED" in _refused(port, alice, None, verify=False)


def test_admin_lists_everyone_and_stops_alices_cluster(
    api: ServiceApi, clusters: dict[str, str]
) -> None:
    everyone = api.ok("GET", "/api/hubgate/clusters?all_users=1", user="admin")
    owners = {c["name"]: c["owner"] for c in everyone["clusters"]}
    assert owners[clusters["alice"]] == "alice"
    assert owners[clusters["bob"]] == "bob"
    # Without all_users an admin sees only their own, like everyone else.
    mine = api.ok("GET", "/api/hubgate/clusters", user="admin")
    assert {c["owner"] for c in mine["clusters"]} <= {"admin"}

    # A cluster of alice's of its own, so the other tests keep theirs.
    name = api.create_cluster("alice")["name"]
    try:
        api.wait_running(name, "alice")
        assert api.cluster(name, "admin")["owner"] == "alice"
        reply = api.request("DELETE", f"/api/v1/clusters/{name}", user="admin")
        assert reply.status == 204, reply.text
        stopped = api.wait_for_cluster(name, "alice", lambda c: c["status"] == "STOPPED", "stopped")
        assert any(e["message"] == "stopped by admin" for e in stopped["events"]), stopped
    finally:
        api.stop_and_wait(name)
