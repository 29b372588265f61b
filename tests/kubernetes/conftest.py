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
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from hubgate.spawners.kubernetes import KubernetesBackend
from tests.fake_kube_apiserver import StandInApiServer

REAL_KUBECONFIG = os.environ.get("HUBGATE_TEST_KUBECONFIG", "")


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
