"""Fixtures for the scheduler proxy and TLS tests: a cluster's credentials, a real TLS
scheduler with one worker (in this process, on the test loop), a running proxy, and
a plain echo server to route raw bytes to."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from distributed import Scheduler, Worker
from distributed.security import Security

from hubgate.hub_service.fd_limit import raise_open_files_limit
from hubgate.hub_service.scheduler_proxy import ProxyLimits, SchedulerProxy
from hubgate.hub_service.tls import ClusterCredentials, generate_cluster_credentials

CLUSTER = "alpha"


def server_security(credentials: ClusterCredentials) -> Security:
    """What the cluster processes load from their credentials folders."""
    return Security(
        tls_ca_file=credentials.ca_cert.decode(),
        tls_scheduler_cert=credentials.scheduler_cert.decode(),
        tls_scheduler_key=credentials.scheduler_key.decode(),
        tls_worker_cert=credentials.worker_cert.decode(),
        tls_worker_key=credentials.worker_key.decode(),
        require_encryption=True,
    )


def client_security(credentials: ClusterCredentials) -> Security:
    """distributed's own Security, built from what a client is handed."""
    return Security(
        tls_ca_file=credentials.ca_cert.decode(),
        tls_client_cert=credentials.client_cert.decode(),
        tls_client_key=credentials.client_key.decode(),
        require_encryption=True,
    )


@pytest.fixture(scope="session", autouse=True)
def open_files_limit() -> None:
    """Raised as the service raises it: the tests hold hundreds of connections."""
    raise_open_files_limit()


@pytest.fixture(scope="session")
def credentials() -> ClusterCredentials:
    return generate_cluster_credentials(CLUSTER)


@dataclass
class TLSCluster:
    name: str
    scheduler: Scheduler
    worker: Worker

    @property
    def address(self) -> str:
        return self.scheduler.address


@pytest.fixture(scope="module")
async def tls_cluster(credentials: ClusterCredentials) -> AsyncIterator[TLSCluster]:
    security = server_security(credentials)
    async with Scheduler(
        security=security, protocol="tls", host="127.0.0.1", port=0, dashboard=False
    ) as scheduler:
        async with Worker(
            scheduler.address, security=security, nthreads=2, host="127.0.0.1"
        ) as worker:
            yield TLSCluster(CLUSTER, scheduler, worker)


@pytest.fixture
async def proxy() -> AsyncIterator[SchedulerProxy]:
    proxy = SchedulerProxy("127.0.0.1", 0, limits=ProxyLimits(hello_timeout=10))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@dataclass
class EchoServer:
    """Echoes what it gets; on end of stream it answers ``bye`` and closes."""

    address: str
    connections: int = 0


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    state = EchoServer(address="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write(b"bye")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield state
        server.close()


async def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Until ``condition()`` holds; fails the test after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)
