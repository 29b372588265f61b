"""hub_service/openapi.json: it describes exactly the routes the service serves, it is
a valid OpenAPI 3.1 document, and the running service's answers fit its schemas."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from openapi_spec_validator import validate as validate_openapi
from tornado.web import RequestHandler

from hubgate.hub_service import api_hubgate, api_v1
from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.service_api import (
    ServiceApi,
    check_with_openapi,
    find_operation,
    openapi_document,
    resolve,
)

PREFIX = "/services/dask-gateway/"
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def served_operations() -> set[tuple[str, str]]:
    """(path template, method) for every route of the service's two APIs."""
    found = set()
    for pattern, handler in api_v1.routes(PREFIX) + api_hubgate.routes(PREFIX):
        assert pattern.startswith(PREFIX), pattern
        template = "/" + pattern[len(PREFIX) :]
        template = template.removesuffix("/?")
        template = template.replace("([^/]+)", "{cluster_name}")
        assert not re.search(r"[()\[\]?*+\\]", template), f"unmapped regex in {pattern}"
        for method in METHODS:
            if getattr(handler, method) is not getattr(RequestHandler, method):
                found.add((template, method))
    return found


def documented_operations() -> set[tuple[str, str]]:
    return {
        (template, method)
        for template, item in openapi_document()["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_documented_and_nothing_else() -> None:
    served, documented = served_operations(), documented_operations()
    assert served - documented == set(), "served but not in openapi.json"
    assert documented - served == set(), "in openapi.json but not served"


def test_document_is_valid_openapi_3_1() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    validate_openapi(doc)


def _operations() -> Iterator[tuple[str, str, dict]]:
    for template, item in openapi_document()["paths"].items():
        for method in METHODS:
            if method in item:
                yield template, method, item[method]


def test_operations_declare_parameters_security_and_json_errors() -> None:
    doc = openapi_document()
    for template, method, operation in _operations():
        where = f"{method.upper()} {template}"
        item = doc["paths"][template]
        params = [resolve(p) for p in item.get("parameters", []) + operation.get("parameters", [])]
        path_params = {p["name"] for p in params if p["in"] == "path"}
        assert path_params == set(re.findall(r"\{(\w+)\}", template)), where
        public = operation["security"] == []
        if not public:
            schemes = {name for requirement in operation["security"] for name in requirement}
            assert schemes == {"hubToken", "hubOAuthCookie", "hubgateSession"}, where
            assert {"401", "403"} <= set(operation["responses"]), where
        for status, response in operation["responses"].items():
            if status.startswith("4"):
                schema = resolve(response)["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (where, status)


def test_v1_cluster_has_exactly_the_eight_keys() -> None:
    v1 = openapi_document()["components"]["schemas"]["V1Cluster"]
    keys = {
        "name",
        "dashboard_route",
        "status",
        "start_time",
        "stop_time",
        "options",
        "tls_cert",
        "tls_key",
    }
    assert v1["additionalProperties"] is False
    assert set(v1["properties"]) == keys
    assert set(v1["required"]) == keys


@pytest.mark.slow
def test_real_answers_fit_the_document(hub: RunningHub) -> None:
    """Every documented operation, called for real, answers as documented."""
    api = ServiceApi(hub)
    called: set[tuple[str, str]] = set()

    def ok(method: str, path: str, body: object = None, user: str = "alice") -> object:
        called.add((find_operation(method, path)[0], method.lower()))
        if body is None:
            return api.ok(method, path, user=user)
        return api.ok(method, path, body, user=user)

    def refused(method: str, path: str, body: object = None, user: str = "alice") -> str:
        called.add((find_operation(method, path)[0], method.lower()))
        reply = (
            api.request(method, path, user=user)
            if body is None
            else api.request(method, path, body, user=user)
        )
        check_with_openapi(method, path, reply)
        return reply.error

    served = api.request("GET", "/api/openapi.json", user=None)
    assert served.status == 200 and served.data == openapi_document()
    called.add(("/api/openapi.json", "get"))
    ok("GET", "/api/health")
    ok("GET", "/api/version")
    ok("GET", "/api/v1/options")
    ok("GET", "/api/v1/options", user="admin")  # staff: with the select field
    ok("GET", "/api/hubgate/options", user="admin")
    ok("GET", "/api/hubgate/whoami")

    rich = ok("POST", "/api/hubgate/clusters", {"options": {}, "lease_seconds": 600})
    v1_name = ok("POST", "/api/v1/clusters/", {"cluster_options": {"worker_cores": 1}})["name"]
    names = [rich["name"], v1_name]
    try:
        api.wait_running(rich["name"], "alice")
        ok("GET", f"/api/v1/clusters/{v1_name}?wait")
        ok("POST", f"/api/hubgate/clusters/{rich['name']}/scale", {"count": 1})
        api.wait_running(rich["name"], "alice", workers=1)
        listed = ok("GET", "/api/v1/clusters/")
        assert listed[rich["name"]]["tls_cert"] is None  # list_credentials is off
        one = ok("GET", f"/api/v1/clusters/{rich['name']}")
        assert one["tls_cert"].startswith("-----BEGIN CERTIFICATE-----")
        ok("GET", "/api/hubgate/clusters?status=running,pending")
        ok("GET", "/api/hubgate/clusters?all_users=1", user="admin")
        ok("GET", f"/api/hubgate/clusters/{rich['name']}?wait=1")
        ok("POST", f"/api/v1/clusters/{rich['name']}/scale", {"count": 2})
        ok("POST", f"/api/v1/clusters/{rich['name']}/adapt", {"minimum": 0, "maximum": 2})
        ok("POST", f"/api/hubgate/clusters/{rich['name']}/adapt", {"active": False})
        ok("POST", f"/api/hubgate/clusters/{rich['name']}/lease", {"seconds": 0})
        logs = ok("GET", f"/api/hubgate/clusters/{rich['name']}/logs?lines=5")
        assert logs["scheduler"], logs
        plots = ok("GET", f"/api/hubgate/clusters/{rich['name']}/plots")
        assert {"title": "Individual Task Stream", "path": "individual-task-stream"} in plots[
            "plots"
        ], plots
        refused("GET", f"/api/hubgate/clusters/{rich['name']}", user="bob")
        refused("POST", "/api/v1/clusters/", {"cluster_options": {"worker_cores": "x"}})
        ok("DELETE", f"/api/v1/clusters/{v1_name}")
        ok("DELETE", f"/api/hubgate/clusters/{rich['name']}")
        api.stop_and_wait(rich["name"], "alice")
        ok("DELETE", f"/api/hubgate/clusters/{rich['name']}")  # already stopped: 200
        assert "not running" in refused(
            "POST", f"/api/hubgate/clusters/{rich['name']}/scale", {"count": 1}
        )
        assert "only a running cluster" in refused(
            "GET", f"/api/hubgate/clusters/{rich['name']}/plots"
        )
    finally:
        for name in names:
            api.stop_and_wait(name)
    assert documented_operations() - called == set(), "operations the test did not call"
