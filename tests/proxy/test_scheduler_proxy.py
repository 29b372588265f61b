"""The SNI proxy with real TLS: a real scheduler and worker behind it, the official
client and distributed's Security in front, and raw bytes for the edge cases."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import ssl
import threading
from pathlib import Path

import dask_gateway.comm  # noqa: F401  (registers gateway://)
import pytest
from dask_gateway.client import GatewaySecurity
from distributed import Client

from hubgate.hub_service.scheduler_proxy import ProxyLimits, SchedulerProxy
from hubgate.hub_service.tls import ClusterCredentials

from .conftest import EchoServer, TLSCluster, client_security, wait_for
from .hello import client_hello, split_records

LOGGER = "hubgate.hub_service.scheduler_proxy"


def _inc(x: int) -> int:
    return x + 1


def _gateway_security(credentials: ClusterCredentials) -> GatewaySecurity:
    return GatewaySecurity(
        tls_key=credentials.client_tls_key(), tls_cert=credentials.client_tls_cert()
    )


async def _closed_without_reply(reader: asyncio.StreamReader) -> bool:
    """The proxy closed the connection without forwarding anything back."""
    async with asyncio.timeout(30):
        return await reader.read() == b""


def _refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and "refused" in r.getMessage()]


async def _open(proxy: SchedulerProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


# -- real clusters through the proxy ----------------------------------------------------


async def test_official_client_computes_through_the_proxy(
    tls_cluster: TLSCluster, proxy: SchedulerProxy, credentials: ClusterCredentials
) -> None:
    proxy.set_route(tls_cluster.name, tls_cluster.address)
    address = f"gateway://127.0.0.1:{proxy.port}/{tls_cluster.name}"
    async with Client(
        address, security=_gateway_security(credentials), asynchronous=True, timeout=60
    ) as client:
        assert await client.submit(_inc, 41) == 42
        assert await client.gather(client.map(_inc, range(100))) == list(range(1, 101))
        payload = bytes(range(256)) * 40_000  # 10 MB each way through the proxy
        [future] = await client.scatter([payload], direct=False)
        assert await client.gather(future, direct=False) == payload
        info = await client.scheduler.identity()
        assert info["address"] == tls_cluster.address
    await wait_for(lambda: proxy.active_connections == 0)


async def test_distributed_security_through_the_proxy(
    tls_cluster: TLSCluster, proxy: SchedulerProxy, credentials: ClusterCredentials
) -> None:
    proxy.set_route(tls_cluster.name, f"tls://{tls_cluster.address.removeprefix('tls://')}")
    address = f"gateway://127.0.0.1:{proxy.port}/{tls_cluster.name}"
    async with Client(
        address, security=client_security(credentials), asynchronous=True, timeout=60
    ) as client:
        assert await client.submit(_inc, 1) == 2


async def test_tls_is_end_to_end(
    tls_cluster: TLSCluster,
    proxy: SchedulerProxy,
    credentials: ClusterCredentials,
    tmp_path: Path,
) -> None:
    """The certificate seen through the proxy is the scheduler's own, and it matches
    the SNI name by hostname checking."""
    proxy.set_route(tls_cluster.name, tls_cluster.address)
    ctx = ssl.create_default_context(cadata=credentials.ca_cert.decode())
    (tmp_path / "client.crt").write_bytes(credentials.client_cert)
    (tmp_path / "client.key").write_bytes(credentials.client_key)
    ctx.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", proxy.port, ssl=ctx, server_hostname=f"daskgateway-{tls_cluster.name}"
    )
    peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.transport.abort()
    assert ssl.DER_cert_to_PEM_cert(peer).encode().strip() == credentials.scheduler_cert.strip()


# -- refusals ---------------------------------------------------------------------------


async def test_unknown_name_is_refused(
    proxy: SchedulerProxy, echo_server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    proxy.set_route("known", echo_server.address)
    reader, writer = await _open(proxy)
    writer.write(client_hello("daskgateway-unknown"))
    assert await _closed_without_reply(reader)
    writer.close()
    [record] = _refusals(caplog)
    assert "no running cluster named 'unknown'" in record.getMessage()
    assert record.exc_info is None
    assert echo_server.connections == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a TLS ClientHello"),
        (client_hello(None), "no server name"),
        (client_hello("alpha"), "does not start with 'daskgateway-'"),
    ],
    ids=["http", "no-sni", "wrong-prefix"],
)
async def test_bad_hellos_are_refused(
    proxy: SchedulerProxy,
    echo_server: EchoServer,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    proxy.set_route("alpha", echo_server.address)
    reader, writer = await _open(proxy)
    writer.write(data)
    assert await _closed_without_reply(reader)
    writer.close()
    [record] = _refusals(caplog)
    assert reason in record.getMessage()
    assert echo_server.connections == 0


async def test_silent_client_times_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    async with SchedulerProxy("127.0.0.1", 0, limits=ProxyLimits(hello_timeout=0.5)) as proxy:
        reader, writer = await _open(proxy)
        writer.write(client_hello("daskgateway-alpha")[:20])
        assert await _closed_without_reply(reader)
        writer.close()
    [record] = _refusals(caplog)
    assert "no TLS ClientHello within 0.5 s" in record.getMessage()


async def test_unreachable_scheduler(
    proxy: SchedulerProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    proxy.set_route("gone", f"127.0.0.1:{port}")
    reader, writer = await _open(proxy)
    writer.write(client_hello("daskgateway-gone"))
    assert await _closed_without_reply(reader)
    writer.close()
    [record] = _refusals(caplog)
    assert "cannot reach the scheduler of 'gone'" in record.getMessage()


def test_bad_route_target() -> None:
    proxy = SchedulerProxy("127.0.0.1", 0)
    with pytest.raises(ValueError, match="host:port"):
        proxy.set_route("alpha", "nonsense")
    assert proxy.routes() == {}


# -- relaying -----------------------------------------------------------------------------


async def test_fragmented_hello_is_forwarded_intact(
    proxy: SchedulerProxy, echo_server: EchoServer
) -> None:
    proxy.set_route("alpha", echo_server.address)
    hello = split_records(client_hello("daskgateway-alpha"), 50)
    reader, writer = await _open(proxy)
    writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for start in range(0, len(hello), 7):  # many small TCP segments
        writer.write(hello[start : start + 7])
        await writer.drain()
        await asyncio.sleep(0.001)
    async with asyncio.timeout(30):
        assert await reader.readexactly(len(hello)) == hello
    writer.close()


async def test_half_close_is_passed_on(proxy: SchedulerProxy, echo_server: EchoServer) -> None:
    proxy.set_route("alpha", echo_server.address)
    hello = client_hello("daskgateway-alpha")
    reader, writer = await _open(proxy)
    writer.write(hello + b"last words")
    writer.write_eof()
    async with asyncio.timeout(30):
        assert await reader.read() == hello + b"last words" + b"bye"
    writer.close()
    await wait_for(lambda: proxy.active_connections == 0)


async def test_both_legs_of_a_relay_send_without_delay(
    proxy: SchedulerProxy, echo_server: EchoServer
) -> None:
    """Dask's messages are small request/reply frames: with Nagle's algorithm on either
    leg, a frame that follows an unacknowledged one waits for the peer's delayed ACK
    (up to 40 ms on Linux), so both the client's and the scheduler's socket of every
    relayed connection have TCP_NODELAY."""
    proxy.set_route("alpha", echo_server.address)
    hello = client_hello("daskgateway-alpha")
    reader, writer = await _open(proxy)
    writer.write(hello + b"ping")
    async with asyncio.timeout(30):
        assert await reader.readexactly(len(hello) + 4) == hello + b"ping"
    # the relay's own sockets: they live in its threads and are reachable no other way
    assert proxy._relays is not None
    relays = [r for thread in proxy._relays._threads for r in list(thread._relays)]
    assert len(relays) == 1
    for sock in (relays[0].client, relays[0].upstream):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    writer.close()
    await wait_for(lambda: proxy.active_connections == 0)


async def test_route_removal_stops_new_connections_only(
    proxy: SchedulerProxy, echo_server: EchoServer
) -> None:
    proxy.set_route("alpha", echo_server.address)
    assert proxy.routes() == {"alpha": echo_server.address}
    hello = client_hello("daskgateway-alpha")
    reader, writer = await _open(proxy)
    writer.write(hello)
    async with asyncio.timeout(30):
        assert await reader.readexactly(len(hello)) == hello

    proxy.remove_route("alpha")
    proxy.remove_route("alpha")  # idempotent
    assert proxy.routes() == {}
    new_reader, new_writer = await _open(proxy)
    new_writer.write(hello)
    assert await _closed_without_reply(new_reader)
    new_writer.close()

    writer.write(b"still here")  # the connection made before goes on
    async with asyncio.timeout(30):
        assert await reader.readexactly(10) == b"still here"
    writer.close()


async def test_many_concurrent_connections(echo_server: EchoServer) -> None:
    # 200 handshakes at once from one address: over the default per-address handshake
    # cap (tests/proxy/test_proxy_limits.py), so this proxy has none.
    limits = ProxyLimits(max_handshakes_per_address=0)
    async with SchedulerProxy("127.0.0.1", 0, limits=limits) as proxy:
        await _many_concurrent_connections(proxy, echo_server)


async def _many_concurrent_connections(proxy: SchedulerProxy, echo_server: EchoServer) -> None:
    proxy.set_route("alpha", echo_server.address)
    hello = client_hello("daskgateway-alpha")

    async def one(i: int) -> bytes:
        reader, writer = await _open(proxy)
        message = f"message {i} ".encode() * 1000
        writer.write(hello + message)
        writer.write_eof()
        async with asyncio.timeout(120):
            data = await reader.read()
        writer.close()
        return data == hello + message + b"bye"

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert all(results)
    await wait_for(lambda: proxy.active_connections == 0)


async def test_stop_while_connections_arrive_closes_every_accepted_socket() -> None:
    # stop() can come between the kernel accepting a connection and the proxy taking it
    # up; that socket must be closed too (an unclosed one is an error of the leak check),
    # with an end of stream, never a reset: a client wrapping a reset socket in TLS
    # leaks it (python/cpython#113280).
    for _ in range(20):
        proxy = SchedulerProxy("127.0.0.1", 0)
        await proxy.start()
        arriving = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(8)]
        await proxy.stop()
        for sock in arriving:
            sock.settimeout(30)
            assert sock.recv(1) == b""  # closed by the proxy, not left open nor reset
            sock.close()
        gc.collect()


async def test_stop_refuses_reconnects_before_ending_relayed_connections(
    echo_server: EchoServer,
) -> None:
    # A client whose relayed connection ends reconnects at once. By then the listener
    # must be closed (refused at connect), not still queueing connections that its
    # close would reset.
    proxy = SchedulerProxy("127.0.0.1", 0)
    await proxy.start()
    proxy.set_route("alpha", echo_server.address)
    hello = client_hello("daskgateway-alpha")
    reader, writer = await _open(proxy)
    writer.write(hello)
    async with asyncio.timeout(30):
        await reader.readexactly(len(hello))
    await wait_for(lambda: proxy.active_connections == 1)

    stopping = asyncio.create_task(proxy.stop())
    async with asyncio.timeout(30):
        assert await reader.read() == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=30).close()
    writer.close()
    await stopping


async def test_stop_closes_everything(echo_server: EchoServer) -> None:
    proxy = SchedulerProxy("127.0.0.1", 0)
    await proxy.start()
    assert proxy.port != 0
    proxy.set_route("alpha", echo_server.address)
    hello = client_hello("daskgateway-alpha")
    clients = []
    for _ in range(5):
        reader, writer = await _open(proxy)
        writer.write(hello)
        async with asyncio.timeout(30):
            await reader.readexactly(len(hello))
        clients.append((reader, writer))
    idle_reader, idle_writer = await _open(proxy)  # still in its handshake
    await wait_for(lambda: proxy.active_connections == 5)

    await proxy.stop()
    await proxy.stop()  # idempotent
    assert proxy.active_connections == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("hubgate-proxy-")]
    for reader, writer in [*clients, (idle_reader, idle_writer)]:
        async with asyncio.timeout(30):
            await reader.read()  # end of stream, not a hang
        writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", proxy.port)
