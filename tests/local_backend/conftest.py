"""Fixtures for the local backend: real schedulers and workers, a recording websocket
endpoint that plays the service's agent endpoint, and cleanup of every process."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import tornado.web
import tornado.websocket
from cryptography.fernet import Fernet

from hubgate.hub_service.secrets import SecretBox
from hubgate.hub_service.store import ClusterStore
from hubgate.hub_service.tls import ClusterCredentials, generate_cluster_credentials
from hubgate.spawners.base import ProcessSpec, ProcessState
from hubgate.spawners.local import LocalBackend

TIMEOUT = 90.0  # generous: the machine is a loaded 2-core box
PREFIX = "/services/dask-gateway"


async def wait_for(condition: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgentEndpoint:
    """A real tornado websocket endpoint standing in for the service's
    ``api/agent/ws``: checks the cluster token, records every message, sends ops."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.tokens: dict[str, str] = {}
        self.messages: list[dict[str, Any]] = []
        self.connections: dict[str, tornado.websocket.WebSocketHandler] = {}
        self.rejected = 0
        self.server: Any = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PREFIX}/api/agent/ws"

    def start(self) -> None:
        endpoint = self

        class Handler(tornado.websocket.WebSocketHandler):
            cluster = ""

            def prepare(self) -> None:
                cluster = self.get_argument("cluster", "")
                header = self.request.headers.get("Authorization", "")
                token = endpoint.tokens.get(cluster)
                if not token or not secrets.compare_digest(header, f"token {token}"):
                    endpoint.rejected += 1
                    raise tornado.web.HTTPError(403)
                self.cluster = cluster

            def open(self) -> None:
                endpoint.connections[self.cluster] = self

            def on_message(self, message: str | bytes) -> None:
                endpoint.messages.append({"_cluster": self.cluster, **json.loads(message)})

            def on_close(self) -> None:
                if endpoint.connections.get(self.cluster) is self:
                    del endpoint.connections[self.cluster]

        app = tornado.web.Application([(f"{PREFIX}/api/agent/ws", Handler)])
        self.server = app.listen(self.port, "127.0.0.1")

    async def stop(self) -> None:
        self.server.stop()
        for conn in list(self.connections.values()):
            conn.close()
        await self.server.close_all_connections()
        self.connections.clear()

    def of(self, cluster: str, type_: str, **match: Any) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m["_cluster"] == cluster
            and m.get("type") == type_
            and all(m.get(k) == v for k, v in match.items())
        ]

    async def wait_message(self, cluster: str, type_: str, **match: Any) -> dict[str, Any]:
        found = await wait_for(
            lambda: self.of(cluster, type_, **match), what=f"{type_} {match} from {cluster}"
        )
        return found[-1]

    async def send(self, cluster: str, message: dict[str, Any]) -> None:
        conn = await wait_for(lambda: self.connections.get(cluster), what=f"{cluster} connected")
        await conn.write_message(json.dumps(message))


class Cluster:
    """Specs for one test cluster's processes."""

    def __init__(self, name: str, endpoint: AgentEndpoint) -> None:
        self.name = name
        self.credentials: ClusterCredentials = generate_cluster_credentials(name)
        self.token = secrets.token_hex(16)
        endpoint.tokens[name] = self.token
        self.endpoint = endpoint
        self.dashboard_prefix = f"{PREFIX}/clusters/{name}"

    def scheduler_spec(self, **kwargs: Any) -> ProcessSpec:
        files = {**self.credentials.credentials_files("scheduler"), "token": self.token.encode()}
        env = {
            "HUBGATE_CLUSTER_NAME": self.name,
            "HUBGATE_AGENT_URL": self.endpoint.url,
            "HUBGATE_DASHBOARD_PREFIX": self.dashboard_prefix,
            **kwargs.pop("env", {}),
        }
        return ProcessSpec(
            cluster_name=self.name,
            role="scheduler",
            name="scheduler",
            username="test",
            argv=[sys.executable, "-m", "hubgate.runtime.cluster_process", "scheduler"],
            env=env,
            files=files,
            **kwargs,
        )

    def worker_spec(
        self, name: str, scheduler_address: str, threads: int, memory: int, **kwargs: Any
    ) -> ProcessSpec:
        env = {
            "HUBGATE_CLUSTER_NAME": self.name,
            "HUBGATE_SCHEDULER_ADDRESS": scheduler_address,
            "HUBGATE_WORKER_NAME": name,
            "HUBGATE_WORKER_THREADS": str(threads),
            "HUBGATE_WORKER_MEMORY": str(memory),
            **kwargs.pop("env", {}),
        }
        return ProcessSpec(
            cluster_name=self.name,
            role="worker",
            name=name,
            username="test",
            argv=[sys.executable, "-m", "hubgate.runtime.cluster_process", "worker"],
            env=env,
            files=self.credentials.credentials_files("worker"),
            cores=threads,
            memory=memory,
            **kwargs,
        )

    def client_security(self, folder: Path) -> Any:
        from distributed.security import Security

        (folder / "ca.crt").write_bytes(self.credentials.ca_cert)
        (folder / "client.crt").write_bytes(self.credentials.client_cert)
        (folder / "client.key").write_bytes(self.credentials.client_key)
        return Security(
            require_encryption=True,
            tls_ca_file=str(folder / "ca.crt"),
            tls_client_cert=str(folder / "client.crt"),
            tls_client_key=str(folder / "client.key"),
        )


def processes_of(cluster_name: str, states: list[ProcessState] = ()) -> list[int]:
    """Pids of live processes of a cluster: in the session of one of its ``states``
    (each process leads its own session), or with ``cluster_name`` in their initial
    environment (exec'd processes and what they exec; a forked child shows its fork
    server's)."""
    marker = f"HUBGATE_CLUSTER_NAME={cluster_name}".encode()
    sessions = {state["pid"] for state in states}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if fields[0] in (b"Z", b"X"):
            continue
        if int(fields[3]) in sessions or marker in env:
            found.append(int(entry))
    return found


@pytest.fixture
async def agent_endpoint() -> AsyncIterator[AgentEndpoint]:
    endpoint = AgentEndpoint()
    endpoint.start()
    yield endpoint
    await endpoint.stop()


class Tracker:
    """Remembers what a test started so teardown stops all of it."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.states: list[ProcessState] = []

    async def start(self, spec: ProcessSpec) -> ProcessState:
        state = await self.backend.start(spec)
        self.states.append(state)
        return state


@pytest.fixture
def work_dir() -> Any:
    # A short path under /tmp: the fork server's unix socket has a length limit anyway,
    # and tmp_path can be long.
    with tempfile.TemporaryDirectory(prefix="hubgate-local-") as folder:
        yield folder


@pytest.fixture(params=["fork", "exec"])
def launch_mode(request: pytest.FixtureRequest) -> str:
    return request.param


async def _make_backend(work_dir: str, fork: bool, uids: ClusterStore) -> LocalBackend:
    # As the service runs it: each user under a uid of their own from the database.
    backend = LocalBackend(
        work_dir=work_dir, use_fork_server=fork, stop_grace_seconds=5, account_mode="uid-range"
    )
    backend.uid_allocator = uids
    await backend.setup()
    return backend


@pytest.fixture
async def uid_store(tmp_path: Path) -> AsyncIterator[ClusterStore]:
    """The service's database, which hands out the users' uids."""
    store = ClusterStore(
        f"sqlite:///{tmp_path / 'hubgate.sqlite'}", SecretBox([Fernet.generate_key()])
    )
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def make_backend(work_dir: str, uid_store: ClusterStore) -> AsyncIterator[Callable[..., Any]]:
    """``await make_backend(fork=True)``: a set-up LocalBackend; every process started
    through a returned tracker is stopped at teardown."""
    made: list[Tracker] = []

    async def make(fork: bool = True) -> Tracker:
        tracker = Tracker(await _make_backend(work_dir, fork, uid_store))
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        for state in tracker.states:
            await tracker.backend.stop(state)
        await tracker.backend.cleanup()


@pytest.fixture
def cluster(agent_endpoint: AgentEndpoint, request: pytest.FixtureRequest) -> Cluster:
    name = "t" + secrets.token_hex(4)
    return Cluster(name, agent_endpoint)
