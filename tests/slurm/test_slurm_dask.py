"""A real Dask cluster as Slurm jobs: the process runtime, TLS, the agent, a computation."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import dask.array as da
import pytest
from distributed import Client
from distributed.security import Security
from tornado.httpserver import HTTPServer
from tornado.web import Application, HTTPError
from tornado.websocket import WebSocketHandler
from traitlets.config import Config

from hubgate.hub_service.tls import agenerate_cluster_credentials
from hubgate.spawners.base import Phase, ProcessSpec

pytestmark = pytest.mark.slow

USER = "hgalice"
CLUSTER = "cdask"
GiB = 2**30


class AgentEndpoint:
    """Plays the service's agent websocket: checks the token, records every message."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.clusters: list[str] = []
        endpoint = self

        class Handler(WebSocketHandler):
            def prepare(self) -> None:
                header = self.request.headers.get("Authorization", "")
                if not hmac.compare_digest(header, f"token {endpoint.token}"):
                    raise HTTPError(401)
                endpoint.clusters.append(self.get_query_argument("cluster"))

            def on_message(self, message: str | bytes) -> None:
                endpoint.messages.put_nowait(json.loads(message))

        self.server = HTTPServer(Application([(r"/api/agent/ws", Handler)]))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.server.add_socket(sock)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/agent/ws"

    async def next(self, kind: str, within: float = 240) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                message = await self.messages.get()
                if message.get("type") == kind:
                    return message

    def close(self) -> None:
        self.server.stop()


def write_client_files(folder: Path, credentials: Any) -> Security:
    (folder / "ca.crt").write_bytes(credentials.ca_cert)
    (folder / "client.crt").write_bytes(credentials.client_cert)
    (folder / "client.key").write_bytes(credentials.client_key)
    return Security(
        require_encryption=True,
        tls_ca_file=str(folder / "ca.crt"),
        tls_client_cert=str(folder / "client.crt"),
        tls_client_key=str(folder / "client.key"),
    )


async def wait_running(backend: Any, state: dict, within: float = 120) -> None:
    async with asyncio.timeout(within):
        while True:
            [status] = await backend.poll([state])
            assert status.phase is not Phase.GONE, status.reason
            if status.phase is Phase.RUNNING:
                return
            await asyncio.sleep(0.5)


@pytest.mark.timeout(900)
async def test_dask_cluster_as_slurm_jobs(make_backend, slurm, tmp_path):
    credentials = await agenerate_cluster_credentials(CLUSTER)
    token = secrets.token_hex(16)
    agent = AgentEndpoint(token)
    backend = make_backend()
    try:
        scheduler = await backend.start(
            ProcessSpec(
                cluster_name=CLUSTER,
                role="scheduler",
                name="scheduler",
                username=USER,
                argv=[sys.executable, "-m", "hubgate.runtime.cluster_process", "scheduler"],
                env={
                    "HUBGATE_CLUSTER_NAME": CLUSTER,
                    "HUBGATE_AGENT_URL": agent.url,
                    "HUBGATE_DASHBOARD_PREFIX": f"/services/dask-gateway/clusters/{CLUSTER}",
                },
                files={**credentials.credentials_files("scheduler"), "token": token.encode()},
                cores=1,
                memory=1 * GiB,
            )
        )
        hello = await agent.next("hello")
        assert agent.clusters[0] == CLUSTER
        address = hello["scheduler_address"]
        # distributed 2026.8's Scheduler ignores contact_address, so the scheduler
        # reports the node's IP rather than the advertised name; either way it listens
        # on 0.0.0.0, not on loopback. (The exported HUBGATE_ADVERTISE_HOST is checked in
        # test_slurm_backend.py.)
        assert address.startswith("tls://") and "127.0.0.1" not in address, address
        # The service's routes use the node Slurm ran the job on (scontrol's BatchHost),
        # never what the scheduler reports.
        assert await backend.route_host(scheduler) == slurm.node

        worker = await backend.start(
            ProcessSpec(
                cluster_name=CLUSTER,
                role="worker",
                name="w1",
                username=USER,
                argv=[sys.executable, "-m", "hubgate.runtime.cluster_process", "worker"],
                env={
                    "HUBGATE_CLUSTER_NAME": CLUSTER,
                    "HUBGATE_SCHEDULER_ADDRESS": address,
                    "HUBGATE_WORKER_NAME": "w1",
                    "HUBGATE_WORKER_THREADS": "1",
                    "HUBGATE_WORKER_MEMORY": str(1 * GiB),
                },
                files=credentials.credentials_files("worker"),
                cores=1,
                memory=1 * GiB,
            )
        )
        added = await agent.next("worker_added")
        assert added["name"] == "w1"
        assert (added["nthreads"], added["memory_limit"]) == (1, 1 * GiB)
        jobs = {ln.split()[0]: ln.split()[1:] for ln in slurm.queue("%i %u %T")}
        assert jobs[scheduler["job_id"]] == [USER, "RUNNING"]
        assert jobs[worker["job_id"]] == [USER, "RUNNING"]

        security = write_client_files(tmp_path, credentials)
        async with Client(address, security=security, asynchronous=True) as client:
            total = await client.compute(da.ones((4000, 4000), chunks=500).sum())
            assert total == 4000 * 4000
            names = await client.run(lambda dask_worker: dask_worker.name)
            assert list(names.values()) == ["w1"]

        # A restarted service finds both jobs from what it stored.
        stored = json.loads(json.dumps([scheduler, worker]))
        restarted = make_backend()
        statuses = await restarted.poll(stored)
        assert [s.phase for s in statuses] == [Phase.RUNNING, Phase.RUNNING]
        log = await restarted.read_log(stored[0])
        assert log and "Scheduler at" in log

        await restarted.stop(stored[1])
        removed = await agent.next("worker_removed")
        assert removed["name"] == "w1"
        await restarted.stop(stored[0])
        left = {ln.strip() for ln in slurm.queue()}
        assert not {scheduler["job_id"], worker["job_id"]} & left
        [status] = await restarted.poll([stored[0]])
        assert status.phase is Phase.GONE
        assert "the process exited normally: the scheduler was stopped" in status.reason
    finally:
        agent.close()


@pytest.mark.timeout(900)
async def test_scheduler_on_the_service_host_with_workers_as_jobs(make_backend, slurm, tmp_path):
    credentials = await agenerate_cluster_credentials("clocal")
    token = secrets.token_hex(16)
    agent = AgentEndpoint(token)
    config = Config()
    # The scheduler runs as the user: its folder must be one their account can reach
    # (pytest's tmp_path is under root's 0700 /tmp/pytest-of-root).
    reachable = tempfile.mkdtemp(prefix="hubgate-slurm-local-")
    os.chmod(reachable, 0o711)
    config.LocalBackend.work_dir = os.path.join(reachable, "local")
    backend = make_backend(scheduler_on_service_host=True, config=config)
    await backend.setup()
    try:
        scheduler = await backend.start(
            ProcessSpec(
                cluster_name="clocal",
                role="scheduler",
                name="scheduler",
                username=USER,
                argv=[sys.executable, "-m", "hubgate.runtime.cluster_process", "scheduler"],
                env={"HUBGATE_CLUSTER_NAME": "clocal", "HUBGATE_AGENT_URL": agent.url},
                files={**credentials.credentials_files("scheduler"), "token": token.encode()},
            )
        )
        assert "local" in scheduler and "job_id" not in scheduler
        address = (await agent.next("hello"))["scheduler_address"]
        worker = await backend.start(
            ProcessSpec(
                cluster_name="clocal",
                role="worker",
                name="w1",
                username=USER,
                argv=[sys.executable, "-m", "hubgate.runtime.cluster_process", "worker"],
                env={
                    "HUBGATE_CLUSTER_NAME": "clocal",
                    "HUBGATE_SCHEDULER_ADDRESS": address,
                    "HUBGATE_WORKER_NAME": "w1",
                    "HUBGATE_WORKER_THREADS": "1",
                    "HUBGATE_WORKER_MEMORY": str(GiB),
                },
                files=credentials.credentials_files("worker"),
                memory=GiB,
            )
        )
        assert (await agent.next("worker_added"))["name"] == "w1"
        statuses = await backend.poll([scheduler, worker])
        assert [s.phase for s in statuses] == [Phase.RUNNING, Phase.RUNNING]
        assert worker["job_id"] in {ln.strip() for ln in slurm.queue()}
        await backend.stop(worker)
        await backend.stop(scheduler)
        statuses = await backend.poll([scheduler, worker])
        assert [s.phase for s in statuses] == [Phase.GONE, Phase.GONE]
    finally:
        agent.close()
        await backend.cleanup()
        shutil.rmtree(reachable, ignore_errors=True)
