"""Calling the hubgate service through the real hub, and checking answers against its
OpenAPI document (shared by the bad-input, isolation, OpenAPI and browser tests)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from hubgate.tooling.hubrunner import RunningHub

ALL_STATUSES = "pending,running,stopping,stopped,failed"


@cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("hubgate.hub_service").joinpath("openapi.json").read_text()
    return json.loads(text)


@dataclass
class Reply:
    status: int
    headers: Message
    text: str

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip()

    @property
    def data(self) -> Any:
        return json.loads(self.text) if self.text else None

    @property
    def error(self) -> str:
        """The ``{"error": ...}`` message, after checking the reply is a JSON error."""
        assert 400 <= self.status < 500, f"expected a 4xx, got {self.status}: {self.text}"
        assert self.content_type == "application/json", (self.content_type, self.text)
        data = self.data
        assert isinstance(data, dict) and set(data) == {"error"}, self.text
        assert isinstance(data["error"], str) and data["error"], self.text
        assert "Traceback" not in data["error"], data["error"]
        return data["error"]


class ServiceApi:
    """The service under ``hub.settings.gateway_address``, through the hub's proxy.

    ``user`` picks one of ``hub.tokens``; ``authorization`` sends that header verbatim
    instead (or nothing when it is ``""``). ``body`` is sent as JSON unless ``None``;
    ``raw`` sends bytes as they are.
    """

    def __init__(self, hub: RunningHub):
        self.hub = hub
        self.base = hub.settings.gateway_address

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str | None = "alice",
        authorization: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 90,
    ) -> Reply:
        sent = dict(headers or {})
        if authorization is not None:
            if authorization:
                sent["Authorization"] = authorization
        elif user is not None:
            sent["Authorization"] = f"token {self.hub.tokens[user]}"
        data = raw
        if data is None and body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return Reply(resp.status, resp.headers, resp.read().decode())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.headers, exc.read().decode())

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """A request that must succeed (checked against the OpenAPI document)."""
        reply = self.request(method, path, body, **kwargs)
        assert 200 <= reply.status < 300, f"{method} {path}: {reply.status} {reply.text}"
        check_with_openapi(method, path, reply)
        return reply.data

    # --- clusters ---------------------------------------------------------------------

    def create_cluster(self, user: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.ok("POST", "/api/hubgate/clusters", {"options": options or {}}, user=user)

    def cluster(self, name: str, user: str) -> dict[str, Any]:
        return self.ok("GET", f"/api/hubgate/clusters/{name}", user=user)

    def wait_for_cluster(
        self,
        name: str,
        user: str,
        condition: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 180,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            cluster = self.ok("GET", f"/api/hubgate/clusters/{name}?wait=10", user=user)
            if condition(cluster):
                return cluster
            if cluster["status"] in ("STOPPED", "FAILED") and what != "stopped":
                raise AssertionError(f"cluster {name} ended while waiting for {what}: {cluster}")
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster {name} not {what} after {timeout} s: {cluster}")
            time.sleep(0.5)

    def wait_running(self, name: str, user: str, workers: int = 0) -> dict[str, Any]:
        return self.wait_for_cluster(
            name,
            user,
            lambda c: c["status"] == "RUNNING" and c["workers"]["running"] >= workers,
            f"running with {workers} worker(s)",
        )

    def stop_and_wait(self, name: str, user: str = "admin") -> None:
        """Stop a cluster (admin by default: works for anyone's) until it is final."""
        reply = self.request("DELETE", f"/api/hubgate/clusters/{name}", user=user)
        assert reply.status in (200, 202, 404), reply.text
        if reply.status != 404:
            self.wait_for_cluster(
                name, user, lambda c: c["status"] in ("STOPPED", "FAILED"), "stopped"
            )

    def names(self, user: str) -> set[str]:
        """Every cluster of ``user`` the service still knows, whatever its status."""
        data = self.ok("GET", f"/api/hubgate/clusters?status={ALL_STATUSES}", user=user)
        return {c["name"] for c in data["clusters"]}


# --- the OpenAPI document ------------------------------------------------------------


def _path_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
    return re.compile(pattern + "$")


def find_operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The document's path template and operation for a request path (query ignored)."""
    bare = path.split("?", 1)[0]
    for template, item in openapi_document()["paths"].items():
        if _path_regex(template).match(bare):
            operation = item.get(method.lower())
            assert operation is not None, f"{method} {template} is not in the OpenAPI document"
            return template, operation
    raise AssertionError(f"{bare} matches no path of the OpenAPI document")


def node_ref_parts(ref: str) -> Iterator[str]:
    assert ref.startswith("#/"), ref
    for part in ref[2:].split("/"):
        yield part.replace("~1", "/").replace("~0", "~")


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` chains of the document (responses, parameters)."""
    doc = openapi_document()
    while "$ref" in node:
        target: Any = doc
        for part in node_ref_parts(node["$ref"]):
            target = target[part]
        node = target
    return node


def validate_schema(schema: dict[str, Any], instance: Any) -> None:
    """Validate with JSON Schema 2020-12 (OpenAPI 3.1's dialect); ``#/components/...``
    references resolve against the whole document."""
    root = {**openapi_document(), **schema}
    jsonschema.Draft202012Validator(root).validate(instance)


def check_with_openapi(method: str, path: str, reply: Reply) -> None:
    """The reply's status is declared for this operation and its body fits the schema."""
    template, operation = find_operation(method, path)
    declared = operation["responses"]
    assert str(reply.status) in declared, (
        f"{method} {template} answered {reply.status}, which the document does not declare "
        f"(it declares {sorted(declared)}): {reply.text}"
    )
    response = resolve(declared[str(reply.status)])
    content = response.get("content")
    if content is None:
        assert not reply.text, f"{method} {template} {reply.status} should have no body"
        return
    assert reply.content_type in content, (reply.content_type, list(content))
    validate_schema(content[reply.content_type]["schema"], reply.data)
