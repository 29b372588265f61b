"""The client's direct-connect attempt (``hubgate/client/direct_connect.py``) against a
real TLS scheduler with a cluster's credentials, a refused port, a port that never
answers the handshake, and the wrong credentials. The end-to-end tests through a hub are
in ``tests/e2e/test_direct_connect.py``."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from distributed import Scheduler
from distributed.security import Security

from hubgate import GatewayClusterError
from hubgate.client.comm import GatewaySecurity
from hubgate.client.direct_connect import choose_scheduler_address
from hubgate.hub_service.tls import ClusterCredentials, generate_cluster_credentials

PROXY = "gateway://127.0.0.1:8786/abc"
LOGGER = "hubgate.client.direct_connect"


def security_of(credentials: ClusterCredentials) -> GatewaySecurity:
    return GatewaySecurity(credentials.client_tls_key(), credentials.client_tls_cert())


@pytest.fixture(scope="module")
def credentials() -> ClusterCredentials:
    return generate_cluster_credentials("abc")


@pytest.fixture
async def scheduler(credentials: ClusterCredentials, tmp_path: Path) -> AsyncIterator[str]:
    """A TLS scheduler with the cluster's scheduler certificate; its address."""
    for name, data in credentials.credentials_files("scheduler").items():
        (tmp_path / name).write_bytes(data)
    security = Security(
        tls_ca_file=str(tmp_path / "ca.crt"),
        tls_scheduler_cert=str(tmp_path / "scheduler.crt"),
        tls_scheduler_key=str(tmp_path / "scheduler.key"),
        require_encryption=True,
    )
    async with Scheduler(
        protocol="tls",
        host="127.0.0.1",
        port=0,
        dashboard_address="127.0.0.1:0",
        security=security,
    ) as running:
        yield running.address


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port nothing listens on (bound, never listening, so nobody takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose kernel accepts connections that nothing ever answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


async def test_auto_takes_the_direct_address_when_it_answers(
    scheduler: str, credentials: ClusterCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    chosen = await choose_scheduler_address(
        "abc", PROXY, scheduler, security_of(credentials), "auto", 10
    )
    assert chosen == scheduler
    assert f"connecting to its scheduler directly at {scheduler}" in caplog.text


@pytest.mark.parametrize("mode", ["auto", "always"])
async def test_other_credentials_are_refused_by_the_scheduler(
    scheduler: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    stranger = security_of(generate_cluster_credentials("someone-else"))
    if mode == "auto":
        assert await choose_scheduler_address("abc", PROXY, scheduler, stranger, mode, 10) == PROXY
        assert f"its scheduler at {scheduler} cannot be reached directly" in caplog.text
        assert all(r.levelno == logging.DEBUG for r in caplog.records), caplog.records
    else:
        with pytest.raises(GatewayClusterError, match="directly at tls://127.0.0.1"):
            await choose_scheduler_address("abc", PROXY, scheduler, stranger, mode, 10)


async def test_a_refused_port_falls_back_and_always_says_why(
    refused_port: int, credentials: ClusterCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    direct = f"tls://127.0.0.1:{refused_port}"
    security = security_of(credentials)
    assert await choose_scheduler_address("abc", PROXY, direct, security, "auto", 10) == PROXY
    assert all(r.levelno == logging.DEBUG for r in caplog.records), caplog.records
    with pytest.raises(GatewayClusterError) as info:
        await choose_scheduler_address("abc", PROXY, direct, security, "always", 10)
    assert f"Cannot connect to the scheduler of cluster abc directly at {direct}" in str(info.value)
    assert "use 'auto'" in str(info.value)


async def test_a_silent_port_falls_back_after_the_timeout(
    silent_port: int, credentials: ClusterCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    direct = f"tls://127.0.0.1:{silent_port}"
    chosen = await choose_scheduler_address(
        "abc", PROXY, direct, security_of(credentials), "auto", 0.3
    )
    assert chosen == PROXY
    assert "no answer within 0.3 s" in caplog.text


async def test_never_and_no_address(refused_port: int, credentials: ClusterCredentials) -> None:
    security = security_of(credentials)
    direct = f"tls://127.0.0.1:{refused_port}"
    assert await choose_scheduler_address("abc", PROXY, direct, security, "never", 10) == PROXY
    assert await choose_scheduler_address("abc", PROXY, None, security, "auto", 10) == PROXY
    with pytest.raises(GatewayClusterError, match="gives no direct address for cluster abc"):
        await choose_scheduler_address("abc", PROXY, None, security, "always", 10)
