"""Fixtures for the Kubernetes backend's tests.

No Kubernetes API server can run on the CI machines, so by default the tests talk to the
stand-in of ``tests/fake_kube_apiserver`` (which runs pods as local processes). Set
``HUBGATE_TEST_KUBECONFIG`` to a kubeconfig to run the same tests against a real cluster
instead; then also set (see docs/kubernetes.md):

- ``HUBGATE_TEST_KUBE_NAMESPACE``: a namespace the tests may fill and empty (default
  ``hubgate-test``; it must exist);
- ``HUBGATE_TEST_KUBE_IMAGE``: an image with Python, hubgate, dask and distributed of the
  versions in this venv;
- ``HUBGATE_TEST_AGENT_HOST``: an address of this machine that pods can reach (for the
  test's agent websocket); the tests must run where pod IPs are routable (e.g. in a pod).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hubgate.spawners.kubernetes import KubernetesBackend
from hubgate.tooling.hubrunner import stop_process_group
from tests.fake_kube_apiserver import StandInApiServer

REAL_KUBECONFIG = os.environ.get("HUBGATE_TEST_KUBECONFIG", "")
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class KubeTarget:
    """Where the tests run pods: the stand-in or a real cluster."""

    kubeconfig: str
    namespace: str
    image: str
    python: str  # the container's Python
    agent_host: str  # how pods reach this test process
    stand_in: StandInApiServer | None = None

    @property
    def is_stand_in(self) -> bool:
        return self.stand_in is not None


@pytest.fixture(
    scope="session", params=["real-cluster" if REAL_KUBECONFIG else "stand-in-apiserver"]
)
async def kube_target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KubeTarget]:
    """The API server the tests use; its name shows in every test id."""
    if REAL_KUBECONFIG:
        yield KubeTarget(
            kubeconfig=REAL_KUBECONFIG,
            namespace=os.environ.get("HUBGATE_TEST_KUBE_NAMESPACE", "hubgate-test"),
            image=os.environ["HUBGATE_TEST_KUBE_IMAGE"],
            python="python",
            agent_host=os.environ["HUBGATE_TEST_AGENT_HOST"],
        )
        return
    workdir = tmp_path_factory.mktemp("stand-in-apiserver")
    server = StandInApiServer(
        workdir,
        node_labels={"hubgate.test/pool": "workers"},
        unpullable_images={"registry.invalid/no-such-image:1"},
        max_grace_seconds=5,
    )
    await server.start()
    kubeconfig = server.write_kubeconfig(workdir / "kubeconfig")
    try:
        yield KubeTarget(
            kubeconfig=str(kubeconfig),
            namespace="hubgate-test",
            image="stand-in.local/hubgate-python:dev",
            python=sys.executable,
            agent_host="127.0.0.1",
            stand_in=server,
        )
    finally:
        await server.stop()


@pytest.fixture
async def core_api(kube_target: KubeTarget) -> AsyncIterator[Any]:
    """A kubernetes_asyncio CoreV1Api of the test itself (to act behind the backend's back)."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=kube_target.kubeconfig, client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api:
        yield client.CoreV1Api(api)


@pytest.fixture
async def make_backend(
    kube_target: KubeTarget,
) -> AsyncIterator[Callable[..., Awaitable[KubernetesBackend]]]:
    """Factory of set-up backends; each is cleaned up (not its pods) at the end."""
    backends: list[KubernetesBackend] = []

    async def make(**traits: Any) -> KubernetesBackend:
        backend = KubernetesBackend(
            kubeconfig=kube_target.kubeconfig,
            namespace=kube_target.namespace,
            image=kube_target.image,
            termination_grace_seconds=5,
            stop_timeout=60,
            **traits,
        )
        await backend.setup()
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        await backend.cleanup()


@pytest.fixture
async def clean_namespace(kube_target: KubeTarget, core_api: Any) -> AsyncIterator[None]:
    """Delete every hubgate pod left in the test namespace after the test."""
    yield
    pods = await core_api.list_namespaced_pod(
        kube_target.namespace, label_selector="app.kubernetes.io/name=hubgate"
    )
    for pod in pods.items:
        try:
            await core_api.delete_namespaced_pod(
                pod.metadata.name, kube_target.namespace, grace_period_seconds=0
            )
        except Exception:  # already gone
            pass
    for _ in range(300):
        pods = await core_api.list_namespaced_pod(
            kube_target.namespace, label_selector="app.kubernetes.io/name=hubgate"
        )
        if not pods.items:
            break
        await asyncio.sleep(0.1)


class AgentEndpoint:
    """A small recording stand-in for the service's scheduler-agent websocket: it checks
    the cluster token and keeps every JSON message per cluster."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.changed = asyncio.Event()
        self.url = ""

    def record(self, cluster: str, message: dict[str, Any]) -> None:
        self.messages.setdefault(cluster, []).append(message)
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_for(
        self, cluster: str, predicate: Callable[[list[dict[str, Any]]], Any], within: float = 120
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not (result := predicate(self.messages.get(cluster, []))):
            remaining = deadline - loop.time()
            assert remaining > 0, f"agent messages of {cluster}: {self.messages.get(cluster)}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return result


@pytest.fixture
async def agent_endpoint(kube_target: KubeTarget) -> AsyncIterator[AgentEndpoint]:
    from tornado import httpserver, web, websocket

    endpoint = AgentEndpoint()

    class AgentSocket(websocket.WebSocketHandler):
        cluster = ""

        def prepare(self) -> None:
            self.cluster = self.get_argument("cluster", "")
            expected = endpoint.tokens.get(self.cluster)
            header = self.request.headers.get("Authorization", "")
            if not expected or not hmac.compare_digest(header, f"token {expected}"):
                raise web.HTTPError(403)

        def on_message(self, message: str | bytes) -> None:
            endpoint.record(self.cluster, json.loads(message))

    app = web.Application([(r"/services/dask-gateway/api/agent/ws", AgentSocket)])
    bind = "0.0.0.0" if kube_target.agent_host != "127.0.0.1" else "127.0.0.1"
    sock = socket.socket()
    sock.bind((bind, 0))
    sock.listen(16)
    sock.setblocking(False)
    server = httpserver.HTTPServer(app)
    server.add_sockets([sock])
    port = sock.getsockname()[1]
    endpoint.url = f"ws://{kube_target.agent_host}:{port}/services/dask-gateway/api/agent/ws"
    yield endpoint
    server.stop()
    await server.close_all_connections()


# -- a stand-in API server in its own process, for a real hub's service to use ------------


class StandInProcess:
    """``python -m tests.fake_kube_apiserver`` as a separate process (so the hub's service
    and the test reach it over HTTP exactly as they would a real API server), with a
    small blocking REST client for the test to act behind the service's back."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.proc: subprocess.Popen[bytes] | None = None
        self.server = ""
        self.token = ""

    def start(self, timeout: float = 60) -> None:
        log = open(self.workdir / "stand-in.log", "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fake_kube_apiserver",
                "--kubeconfig",
                str(self.kubeconfig),
            ],
            cwd=_REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the stand-in API server exited early:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stand-in API server did not come up:\n{self.log_tail()}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        config = yaml.safe_load(self.kubeconfig.read_text()) or {}
        try:
            self.server = config["clusters"][0]["cluster"]["server"]
            self.token = config["users"][0]["user"]["token"]
            self.call("GET", "/version")
        except (KeyError, IndexError, OSError):
            return False
        return True

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "stand-in.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        url = self.server + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        found = self.call(
            "GET", f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": selector}
        )
        return list(found.get("items") or [])

    def watch_start(self, namespace: str) -> str:
        """A resourceVersion from which a later watch replays everything that happens
        from now on. (A list's version can be "0", which means "any point" to a watch,
        so a marker Secret is written and removed instead.)"""
        marker = self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/secrets",
            body={"metadata": {"generateName": "watch-marker-"}, "type": "Opaque"},
        )
        self.call("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{marker['metadata']['name']}")
        return str(marker["metadata"]["resourceVersion"])

    def pod_events_since(self, namespace: str, selector: str, version: str) -> list[dict[str, Any]]:
        """Every watch event of the matching pods after ``version`` (replayed from the
        API server's history; the watch ends after a second without news)."""
        query = {
            "watch": "1",
            "labelSelector": selector,
            "resourceVersion": version,
            "timeoutSeconds": "1",
        }
        url = f"{self.server}/api/v1/namespaces/{namespace}/pods?" + urllib.parse.urlencode(query)
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        errors = [e for e in events if e["type"] == "ERROR"]
        assert not errors, f"the watch failed: {errors}"
        return events

    def delete_pod(self, namespace: str, name: str) -> None:
        """A plain ``DELETE`` of the pod, as ``kubectl delete pod`` would send it."""
        self.call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")

    def stop(self, timeout: float = 60) -> None:
        # SIGTERM: the stand-in ends its pods' processes before it exits.
        if self.proc is not None:
            stop_process_group(self.proc, timeout)


@pytest.fixture(scope="module")
def stand_in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInProcess]:
    """A stand-in API server process for one test module, stopped at its end."""
    if REAL_KUBECONFIG:
        pytest.skip(
            "needs the stand-in: the test hub listens on 127.0.0.1, which pods in a real "
            "cluster cannot reach"
        )
    server = StandInProcess(tmp_path_factory.mktemp("stand-in-process"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
