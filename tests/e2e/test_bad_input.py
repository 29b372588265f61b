"""Every mistake a user can make is a 4xx with a JSON message that says what is wrong,
never a 500 or a traceback: against the real hub, through its proxy, for dask-gateway's
v1 API and hubgate's own, and through the official dask-gateway client."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.service_api import ServiceApi, check_with_openapi
from tests.fixtures.hub import gateway_env

pytestmark = pytest.mark.slow

SCOPE = "access:services!service=dask-gateway"
UNKNOWN = f"no-such-cluster-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def api(hub: RunningHub) -> ServiceApi:
    return ServiceApi(hub)


@pytest.fixture(scope="module")
def cluster(api: ServiceApi) -> Iterator[str]:
    """A running cluster of alice's (no workers) to send bad scale/adapt requests to."""
    name = api.create_cluster("alice")["name"]
    try:
        api.wait_running(name, "alice")
        yield name
    finally:
        api.stop_and_wait(name)


def refused(
    api: ServiceApi,
    status: int,
    method: str,
    path: str,
    *args: Any,
    documented: bool = True,
    **kw: Any,
) -> str:
    """Send a request that must be refused with ``status``; return its message. A
    ``documented`` operation's answer is also checked against openapi.json."""
    reply = api.request(method, path, *args, **kw)
    assert reply.status == status, f"{method} {path}: {reply.status} {reply.text}"
    message = reply.error  # checks: JSON, {"error": non-empty text}, no traceback
    if documented:
        check_with_openapi(method, path, reply)
    return message


# --- bodies that are not JSON objects --------------------------------------------------

POST_PATHS = [
    "/api/v1/clusters/",
    "/api/hubgate/clusters",
    "/api/v1/clusters/{name}/scale",
    "/api/v1/clusters/{name}/adapt",
    "/api/hubgate/clusters/{name}/scale",
    "/api/hubgate/clusters/{name}/adapt",
    "/api/hubgate/clusters/{name}/lease",
]
NOT_OBJECTS = [
    (b"{bad json", "The request body is not valid JSON: Expecting property name"),
    (b'{"count": 1', "The request body is not valid JSON"),
    (b"\xff\xfe", "The request body is not valid JSON"),
    (b"[1, 2]", "The request body must be a JSON object, got list"),
    (b'"text"', "The request body must be a JSON object, got str"),
    (b"4", "The request body must be a JSON object, got int"),
]


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize(("raw", "expected"), NOT_OBJECTS, ids=lambda v: repr(v)[:20])
def test_body_that_is_not_a_json_object(
    api: ServiceApi, cluster: str, path: str, raw: bytes, expected: str
) -> None:
    before = api.names("alice")
    message = refused(api, 400, "POST", path.format(name=cluster), raw=raw)
    assert message.startswith(expected), message
    assert api.names("alice") == before


# --- scale and adapt -------------------------------------------------------------------

SCALE_CASES = [
    ({"count": "4"}, "Scale expects a non-negative integer, got '4'"),
    ({"count": 2.5}, "Scale expects a non-negative integer, got 2.5"),
    ({"count": True}, "Scale expects a non-negative integer, got True"),
    ({"count": -1}, "Scale expects a non-negative integer, got -1"),
    ({"count": None}, "Scale expects a non-negative integer, got None"),
    ({}, 'Scale expects a JSON body like {"count": 4}'),
    (
        {"count": 1, "workers": 2},
        "Unknown field(s) 'workers' in the request body; expected only count",
    ),
]
ADAPT_CASES = [
    ({"minimum": "x"}, "Adapt expects minimum to be a non-negative integer, got 'x'"),
    ({"minimum": -1}, "Adapt expects minimum to be a non-negative integer, got -1"),
    ({"maximum": 2.5}, "Adapt expects maximum to be a non-negative integer, got 2.5"),
    ({"maximum": True}, "Adapt expects maximum to be a non-negative integer, got True"),
    ({"active": "yes"}, "Adapt expects active to be true or false, got 'yes'"),
    ({"minimum": 3, "maximum": 1}, "Adapt minimum (3) must not exceed maximum (1)"),
    ({"min": 1, "max": 3}, "Unknown field(s) 'max', 'min' in the request body"),
]


@pytest.mark.parametrize("api_kind", ["v1", "hubgate"])
def test_bad_scale_and_adapt_change_nothing(api: ServiceApi, cluster: str, api_kind: str) -> None:
    base = f"/api/{api_kind}/clusters/{cluster}"
    before = api.cluster(cluster, "alice")
    for body, expected in SCALE_CASES:
        message = refused(api, 422, "POST", f"{base}/scale", body)
        assert message.startswith(expected), (body, message)
    for body, expected in ADAPT_CASES:
        message = refused(api, 422, "POST", f"{base}/adapt", body)
        assert message.startswith(expected), (body, message)
    after = api.cluster(cluster, "alice")
    assert after["workers"]["requested"] == before["workers"]["requested"]
    assert after["adaptive"] == before["adaptive"]


def test_bad_lease_and_wait_and_lines(api: ServiceApi, cluster: str) -> None:
    base = f"/api/hubgate/clusters/{cluster}"
    message = refused(api, 422, "POST", f"{base}/lease", {"seconds": "soon"})
    assert message == "Lease expects seconds >= 0, got 'soon'"
    message = refused(api, 422, "POST", f"{base}/lease", {"seconds": 99999})
    assert message == "A lease may last at most 3600 seconds; renew it more often"
    message = refused(api, 422, "GET", f"{base}?wait=soon")
    assert message == "wait must be a number of seconds, got 'soon'"
    assert refused(api, 422, "GET", f"{base}/logs?lines=many") == "lines must be an integer"
    message = refused(api, 422, "GET", f"{base}/logs?lines=0")
    assert message == "lines must be between 1 and 10000"
    message = refused(api, 422, "GET", "/api/v1/clusters/?status=bogus")
    assert message.startswith("'bogus' is not a valid cluster status; use one of pending")


# --- cluster options ---------------------------------------------------------------------

OPTION_CASES = [
    ("alice", {"worker_cores": "4"}, "worker_cores must be an integer, got '4'"),
    ("alice", {"worker_cores": 2.5}, "worker_cores must be an integer, got 2.5"),
    ("alice", {"worker_cores": True}, "worker_cores must be an integer, got True"),
    ("alice", {"worker_cores": 100}, "worker_cores must be at most 2, got 100"),
    ("alice", {"worker_cores": 0}, "worker_cores must be at least 1, got 0"),
    ("alice", {"worker_memory": "x"}, "worker_memory must be a number, got 'x'"),
    ("alice", {"worker_memory": 100}, "worker_memory must be at most 4, got 100"),
    ("alice", {"idle_timeout_minutes": -5}, "idle_timeout_minutes must be at least 0, got -5"),
    ("alice", {"worker_setup": 3}, "worker_setup must be a string, got 3"),
    (
        "alice",
        {"foo": 1},
        "Unknown option 'foo'; available options: worker_cores, worker_memory, environment",
    ),
    ("alice", {"environment": "A: [b"}, "environment is not valid YAML at line 2, column 1"),
    ("alice", {"environment": [1]}, "environment must be a mapping of names to values, got a list"),
    (
        "alice",
        {"environment": {"A": {"nested": 1}}},
        "environment: the value of A must be a single value (text, a number or true/false), "
        "got a dict",
    ),
    (
        "alice",
        {"environment": "A: [1, 2]"},
        "environment: values must be single values (text, numbers, true/false), not nested",
    ),
    ("alice", {"environment": "A: &x 1\nB: *x"}, "environment: YAML anchors and aliases"),
    ("alice", {"environment": "A: !!binary aGk="}, "environment: YAML tags (!...) are not allowed"),
    ("alice", {"environment": "A: 2026-01-01"}, "environment: the value of A must be a single"),
    ("alice", {"environment": {"K" * 300: "1"}}, "environment: the name 'KKKK"),
    (
        "alice",
        {"environment": {f"K{i}": "v" for i in range(300)}},
        "environment may have at most 256 entries",
    ),
    ("alice", {"environment": "A: " + "v" * 70000}, "environment is too large: at most 64 KiB"),
    (
        "admin",
        {"profile": "huge"},
        "'huge' is not a valid choice for profile; choose one of: small",
    ),
    ("admin", {"profile": 1}, "1 is not a valid choice for profile; choose one of: small"),
    ("alice", {"profile": "small"}, "Unknown option 'profile'"),  # staff only
    ("alice", 5, "Cluster options must be a mapping of option names to values, got a number"),
    ("alice", "worker_cores=2", "Cluster options must be a mapping of option names to values"),
]


@pytest.mark.parametrize("api_kind", ["v1", "hubgate"])
def test_bad_cluster_options_create_nothing(api: ServiceApi, api_kind: str) -> None:
    before = {user: api.names(user) for user in ("alice", "admin")}
    for user, options, expected in OPTION_CASES:
        if api_kind == "v1":
            path, body = "/api/v1/clusters/", {"cluster_options": options}
        else:
            path, body = "/api/hubgate/clusters", {"options": options}
        message = refused(api, 422, "POST", path, body, user=user)
        assert message.startswith(expected), (options, message)
    assert {user: api.names(user) for user in ("alice", "admin")} == before


CREATE_BODY_CASES = [
    (
        "/api/v1/clusters/",
        {"options": {"worker_cores": 1}},
        "Unknown field(s) 'options' in the request body; expected only cluster_options",
    ),
    (
        "/api/hubgate/clusters",
        {"cluster_options": {}},
        "Unknown field(s) 'cluster_options' in the request body; expected only options",
    ),
    ("/api/hubgate/clusters", {"lease_seconds": "x"}, "lease_seconds must be a number"),
    ("/api/hubgate/clusters", {"lease_seconds": -1}, "lease_seconds must be a number"),
    ("/api/hubgate/clusters", {"lease_seconds": 7200}, "A lease may last at most 3600"),
    ("/api/hubgate/clusters", {"shutdown_on_close": "x"}, "shutdown_on_close must be true"),
]


def test_bad_create_bodies_create_nothing(api: ServiceApi) -> None:
    before = api.names("alice")
    for path, body, expected in CREATE_BODY_CASES:
        message = refused(api, 422, "POST", path, body)
        assert message.startswith(expected), (body, message)
    assert api.names("alice") == before


# --- unknown clusters, paths and methods ------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/clusters/{}", None),
        ("GET", "/api/v1/clusters/{}?wait", None),
        ("POST", "/api/v1/clusters/{}/scale", {"count": 1}),
        ("POST", "/api/v1/clusters/{}/adapt", {"minimum": 1}),
        ("GET", "/api/hubgate/clusters/{}", None),
        ("DELETE", "/api/hubgate/clusters/{}", None),
        ("POST", "/api/hubgate/clusters/{}/scale", {"count": 1}),
        ("POST", "/api/hubgate/clusters/{}/adapt", {}),
        ("POST", "/api/hubgate/clusters/{}/lease", {}),
        ("GET", "/api/hubgate/clusters/{}/logs", None),
    ],
)
def test_unknown_cluster_is_404(api: ServiceApi, method: str, path: str, body: Any) -> None:
    args = () if body is None else (body,)
    message = refused(api, 404, method, path.format(UNKNOWN), *args)
    assert message == f"Cluster {UNKNOWN} not found"


def test_v1_delete_of_an_unknown_cluster_is_204_like_dask_gateway(api: ServiceApi) -> None:
    reply = api.request("DELETE", f"/api/v1/clusters/{UNKNOWN}")
    assert reply.status == 204 and reply.text == ""


@pytest.mark.parametrize(
    "path", ["/api/nothing", "/api/v1/clusters", "/api/v2/clusters/", "/api/hubgate/nope"]
)
def test_unknown_path_is_a_json_404_pointing_at_the_api(api: ServiceApi, path: str) -> None:
    message = refused(api, 404, "GET", path, documented=False)
    prefix = "/services/dask-gateway/"
    assert message == (
        f"Not found: {prefix}{path.lstrip('/')}. The API is under {prefix}api/ "
        f"(see {prefix}api/openapi.json)"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/clusters/"),
        ("PATCH", "/api/hubgate/whoami"),
        ("DELETE", "/api/v1/options"),
        ("POST", "/api/hubgate/clusters/{}/logs"),
        ("DELETE", "/api/v1/clusters/"),
    ],
)
def test_wrong_method_is_405(api: ServiceApi, method: str, path: str) -> None:
    path = path.format(UNKNOWN)
    args = () if method == "DELETE" else ({},)
    message = refused(api, 405, method, path, *args, documented=False)
    assert message == f"{method} is not allowed on /services/dask-gateway{path}"


# --- credentials ------------------------------------------------------------------------

AUTH_PATHS = [
    ("GET", "/api/v1/clusters/"),
    ("GET", "/api/hubgate/whoami"),
    ("POST", "/api/v1/clusters/"),
]


def _expect_401(api: ServiceApi, authorization: str) -> list[str]:
    messages = []
    for method, path in AUTH_PATHS:
        body = {"cluster_options": {}} if method == "POST" else None
        reply = api.request(method, path, body, authorization=authorization)
        assert reply.status == 401, (authorization, reply.text)
        assert reply.headers.get("WWW-Authenticate") == 'token realm="JupyterHub"'
        check_with_openapi(method, path, reply)
        messages.append(reply.error)
    return messages


def test_missing_token(api: ServiceApi) -> None:
    before = api.names("alice")
    for message in _expect_401(api, ""):
        assert message == (
            "Authentication required: send your JupyterHub API token as "
            "'Authorization: token <token>' (create one at /hub/token)"
        )
    assert api.names("alice") == before


@pytest.mark.parametrize(
    "header", ["Bearer", "token", "jupyterhub", "Basic YWxpY2U6c2VjcmV0", "token a b"]
)
def test_malformed_authorization_header(api: ServiceApi, header: str) -> None:
    for message in _expect_401(api, header):
        assert message == (
            "The Authorization header is malformed; send "
            "'Authorization: token <your JupyterHub API token>'"
        )


@pytest.mark.parametrize("scheme", ["token", "Bearer", "jupyterhub"])
def test_garbled_token(api: ServiceApi, scheme: str) -> None:
    for message in _expect_401(api, f"{scheme} not-a-real-token-{uuid.uuid4().hex}"):
        assert message == (
            "Your JupyterHub API token is invalid or expired; create a new one at /hub/token"
        )


def test_expired_token(api: ServiceApi, hub: RunningHub) -> None:
    token = hub.api("POST", "/users/alice/tokens", {"note": "expires", "expires_in": 1})["token"]

    # Ask the hub (not the service, which would cache the token while it is valid).
    deadline = time.monotonic() + 60
    while True:
        try:
            hub.api("GET", "/user", token=token)
        except urllib.error.HTTPError as exc:
            assert exc.code in (401, 403)
            break
        assert time.monotonic() < deadline, "the token did not expire"
        time.sleep(0.5)
    for message in _expect_401(api, f"token {token}"):
        assert message.startswith("Your JupyterHub API token is invalid or expired")


def test_token_without_the_service_scope(api: ServiceApi, hub: RunningHub) -> None:
    token = hub.make_token("alice", scopes=["read:users:name!user"], note="narrow")
    before = api.names("alice")
    for method, path in AUTH_PATHS:
        body = {"cluster_options": {}} if method == "POST" else None
        reply = api.request(method, path, body, authorization=f"token {token}")
        assert reply.status == 403, reply.text
        check_with_openapi(method, path, reply)
        assert reply.error == (
            "Your token does not grant access to the service 'dask-gateway': it needs the "
            f"scope {SCOPE}. Ask your hub's admin to grant it, or create a token with that "
            "scope at /hub/token"
        )
    assert api.names("alice") == before


# --- the official dask-gateway client ----------------------------------------------------

CLIENT_SCRIPT = """
import gc, json, sys
from dask_gateway import Gateway
from dask_gateway.client import GatewayClusterError

running, stopped, unknown = sys.argv[1:4]
gc.disable()  # collections only below, on this thread (see there)
gateway = Gateway()
before = sorted(c.name for c in gateway.list_clusters())
results = {}
cases = {
    "too many cores": lambda: gateway.submit(worker_cores=100),
    "unknown option": lambda: gateway.submit(foo=1),
    "bad yaml": lambda: gateway.submit(environment="A: [b"),
    "connect unknown": lambda: gateway.connect(unknown),
    "scale unknown": lambda: gateway.scale_cluster(unknown, 1),
    "negative scale": lambda: gateway.scale_cluster(running, -1),
    "string scale": lambda: gateway.scale_cluster(running, "4"),
    "bad adapt": lambda: gateway.adapt_cluster(running, minimum=3, maximum=1),
    "scale stopped": lambda: gateway.scale_cluster(stopped, 1),
    "adapt stopped": lambda: gateway.adapt_cluster(stopped, minimum=0, maximum=1),
}
for label, call in cases.items():
    try:
        call()
        results[label] = ["no error", ""]
    except Exception as exc:
        results[label] = [type(exc).__name__, str(exc)]
    # A failed connect leaves a Gateway in a reference cycle (through the traceback).
    # Collected here, on this thread: a collection that happens to run on the client's
    # loop thread calls its __del__ -> close() -> sync() there, which waits for that
    # same loop forever (dask-gateway 2026.3.0).
    gc.collect()
after = sorted(c.name for c in gateway.list_clusters())
gateway.close()
print("RESULT " + json.dumps({"results": results, "before": before, "after": after}))
"""

CLIENT_EXPECTED = {
    "too many cores": ("ValueError", "worker_cores must be at most 2, got 100"),
    "unknown option": ("ValueError", "Unknown option 'foo'; available options: worker_cores"),
    "bad yaml": ("ValueError", "environment is not valid YAML at line 2"),
    "connect unknown": ("ValueError", f"Cluster {UNKNOWN} not found"),
    "scale unknown": ("ValueError", f"Cluster {UNKNOWN} not found"),
    "negative scale": ("ValueError", "Scale expects a non-negative integer, got -1"),
    "string scale": ("ValueError", "Scale expects a non-negative integer, got '4'"),
    "bad adapt": ("ValueError", "Adapt minimum (3) must not exceed maximum (1)"),
    "scale stopped": ("GatewayClusterError", "Cluster {stopped} is not running (it is STOPPED)"),
    "adapt stopped": ("GatewayClusterError", "Cluster {stopped} is not running (it is STOPPED)"),
}


def test_official_client_raises_with_our_messages(
    api: ServiceApi, hub: RunningHub, cluster: str, tmp_path: Path
) -> None:
    stopped = api.create_cluster("alice")["name"]
    api.stop_and_wait(stopped, "alice")
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, cluster, stopped, UNKNOWN],
        env=gateway_env(hub, "alice"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    report = json.loads(line.removeprefix("RESULT "))
    for label, (kind, message) in CLIENT_EXPECTED.items():
        got_kind, got_message = report["results"][label]
        assert got_kind == kind, (label, got_kind, got_message)
        assert got_message.startswith(message.format(stopped=stopped)), (label, got_message)
    assert report["after"] == report["before"], "a refused request left a cluster behind"


# --- hostile sizes: answered in milliseconds, without holding up anyone else -------------

# The billion-laughs shape: nine references per line, nine lines, a few hundred bytes
# that expand to 9**9 strings. Before option values were bounded, the service expanded
# one of these on its event loop for seconds, answering nothing else meanwhile.
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{new}: &{new} [{', '.join([f'*{old}'] * 9)}]\n"
    for old, new in zip("abcdefgh", "bcdefghi", strict=True)
)
# The issue demands an answer "in milliseconds", within 100 ms. The time measured here
# includes the hub's proxy in front of the service on a loaded test machine, so it is
# an upper bound on the service's own time; the broken service took seconds.
BOUND = 0.1


def timed(api: ServiceApi, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    reply = api.request(*args, **kwargs)
    return time.perf_counter() - start, reply


@pytest.mark.parametrize("api_kind", ["v1", "hubgate"])
def test_a_yaml_alias_bomb_is_refused_in_milliseconds(api: ServiceApi, api_kind: str) -> None:
    assert len(ALIAS_BOMB) < 600
    before = api.names("alice")
    api.names("alice")  # the token is checked and cached: the timed request is ours alone
    if api_kind == "v1":
        path, body = "/api/v1/clusters/", {"cluster_options": {"environment": ALIAS_BOMB}}
    else:
        path, body = "/api/hubgate/clusters", {"options": {"environment": ALIAS_BOMB}}
    elapsed, reply = timed(api, "POST", path, body)
    assert reply.status == 422, reply.text
    assert reply.error.startswith("environment: YAML anchors and aliases (& and *) are not allowed")
    assert elapsed < BOUND, elapsed
    assert api.names("alice") == before


def test_a_20_mb_environment_is_413_in_milliseconds(api: ServiceApi) -> None:
    environment = {f"VAR_{i}": "x" * 1000 for i in range(20_000)}
    body = json.dumps({"options": {"environment": environment}}).encode()
    assert len(body) > 20 * 10**6
    before = api.names("alice")
    elapsed, reply = timed(api, "POST", "/api/hubgate/clusters", raw=body)
    assert reply.status == 413, reply.text
    assert reply.error.startswith(f"The request body is {len(body)} bytes; this service accepts")
    # Most of this is moving 20 MB through the hub's proxy; none of it is parsing.
    assert elapsed < BOUND, elapsed
    assert api.names("alice") == before


def test_a_body_over_the_cap_is_a_json_413(api: ServiceApi, cluster: str) -> None:
    padding = " " * (2 * 2**20)
    raw = ('{"count": 1' + padding + "}").encode()
    for path in (f"/api/v1/clusters/{cluster}/scale", f"/api/hubgate/clusters/{cluster}/scale"):
        message = refused(api, 413, "POST", path, raw=raw, documented=False)
        assert message == (
            f"The request body is {len(raw)} bytes; this service accepts at most "
            f"{2**20} bytes per request"
        )
    assert api.cluster(cluster, "alice")["workers"]["requested"] == 0


def test_the_service_answers_others_while_refusing_hostile_input(api: ServiceApi) -> None:
    """Alice's hostile requests and bob's ordinary ones at the same time: bob's are
    answered as promptly as ever (the broken service held them for the seconds it spent
    expanding the aliases)."""
    api.names("bob")
    hostile = {"options": {"environment": ALIAS_BOMB}}
    answers: list[int] = []

    def attack() -> None:
        for _ in range(20):
            answers.append(api.request("POST", "/api/hubgate/clusters", hostile).status)

    thread = threading.Thread(target=attack)
    thread.start()
    try:
        slowest = 0.0
        while thread.is_alive():
            elapsed, reply = timed(api, "GET", "/api/hubgate/clusters", user="bob")
            assert reply.status == 200, reply.text
            slowest = max(slowest, elapsed)
    finally:
        thread.join()
    assert answers == [422] * 20
    # Generous (ten times the bound): a loaded machine, two clients, the hub's proxy.
    assert slowest < 10 * BOUND, slowest
