"""The scheduler proxy's caps and timeouts: per-address and overall caps on handshakes
and connections, the ClientHello (slowloris) timeout, the idle timeout (and that a
healthy Dask client outlives it), a fixed number of relay threads, the descriptor
budget, IPv6, and rate-limited log lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import fields

import dask
import dask_gateway.comm  # noqa: F401  (registers gateway://)
import pytest
from dask_gateway.client import GatewaySecurity
from distributed import Client

from hubgate.hub_service.app import HubgateService
from hubgate.hub_service.proxy_admission import address_key
from hubgate.hub_service.ratelimited_log import RateLimitedLog
from hubgate.hub_service.scheduler_proxy import ProxyLimits, SchedulerProxy
from hubgate.hub_service.tls import ClusterCredentials

from .conftest import EchoServer, TLSCluster, wait_for
from .hello import client_hello

LOGGER = "hubgate.hub_service.scheduler_proxy"
HELLO = client_hello("daskgateway-alpha")

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def running(
    limits: ProxyLimits, echo: EchoServer | None = None
) -> AsyncIterator[SchedulerProxy]:
    async with SchedulerProxy("127.0.0.1", 0, limits=limits) as proxy:
        if echo is not None:
            proxy.set_route("alpha", echo.address)
        yield proxy


class Connections:
    """Client connections opened by a test, all closed at its end."""

    def __init__(self, proxy: SchedulerProxy) -> None:
        self.proxy = proxy
        self.opened: list[asyncio.StreamWriter] = []

    async def open(self, source: str = "127.0.0.1") -> Stream:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.proxy.port, local_addr=(source, 0)
        )
        self.opened.append(writer)
        return reader, writer

    def close(self) -> None:
        for writer in self.opened:
            writer.close()


@pytest.fixture
def connections() -> Iterator[list[Connections]]:
    made: list[Connections] = []
    yield made
    for c in made:
        c.close()


def track(made: list[Connections], proxy: SchedulerProxy) -> Connections:
    c = Connections(proxy)
    made.append(c)
    return c


async def closed_at_once(reader: asyncio.StreamReader) -> bool:
    """The proxy closed the connection without a byte."""
    async with asyncio.timeout(30):
        try:
            return await reader.read() == b""
        except ConnectionResetError:
            return True


async def relayed(stream: Stream, payload: bytes = b"ping") -> bool:
    """Send the ClientHello (unless sent) and ``payload``; the echo answers both."""
    reader, writer = stream
    writer.write(HELLO + payload)
    async with asyncio.timeout(30):
        return await reader.readexactly(len(HELLO) + len(payload)) == HELLO + payload


def refusal_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


# -- caps on handshakes ----------------------------------------------------------------


async def test_per_address_handshake_cap(
    echo_server: EchoServer, connections: list[Connections], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    async with running(ProxyLimits(max_handshakes_per_address=3), echo_server) as proxy:
        conns = track(connections, proxy)
        held = [await conns.open("127.0.0.2") for _ in range(3)]
        await wait_for(lambda: proxy.handshakes == 3)
        over = [await conns.open("127.0.0.2") for _ in range(5)]
        for reader, _ in over:
            assert await closed_at_once(reader)
        other = await conns.open("127.0.0.3")  # another address has its own budget
        assert await relayed(other)
        for stream in held:  # the held ones were waiting, not dropped
            assert await relayed(stream)
        await wait_for(lambda: proxy.handshakes == 0)
        assert await relayed(await conns.open("127.0.0.2"))  # room again once routed
    lines = refusal_lines(caplog, "refused a connection from 127.0.0.2 at once")
    assert len(lines) == 1, lines  # five refusals, one (rate-limited) line
    assert "max_handshakes_per_address" in lines[0]


async def test_overall_handshake_cap(
    echo_server: EchoServer, connections: list[Connections]
) -> None:
    limits = ProxyLimits(max_handshakes=4, max_handshakes_per_address=0)
    async with running(limits, echo_server) as proxy:
        conns = track(connections, proxy)
        held = [await conns.open(f"127.0.0.{10 + i}") for i in range(4)]
        await wait_for(lambda: proxy.handshakes == 4)
        reader, _ = await conns.open("127.0.0.20")
        assert await closed_at_once(reader)
        assert await relayed(held[0])  # a routed connection leaves the handshake count
        await wait_for(lambda: proxy.handshakes == 3)
        assert proxy.open_connections == 4
        assert await relayed(await conns.open("127.0.0.20"))
        for stream in held[1:]:
            assert await relayed(stream)


# -- caps on connections -----------------------------------------------------------------


async def test_connection_caps_count_relayed_connections(
    echo_server: EchoServer, connections: list[Connections], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    limits = ProxyLimits(max_connections=3, max_connections_per_address=2)
    async with running(limits, echo_server) as proxy:
        conns = track(connections, proxy)
        first = [await conns.open("127.0.0.2") for _ in range(2)]
        for stream in first:
            assert await relayed(stream)
        assert proxy.active_connections == 2
        reader, _ = await conns.open("127.0.0.2")  # per address
        assert await closed_at_once(reader)
        third = await conns.open("127.0.0.3")
        assert await relayed(third)
        reader, _ = await conns.open("127.0.0.4")  # overall
        assert await closed_at_once(reader)
        first[0][1].close()  # a closed connection frees its place
        await wait_for(lambda: proxy.open_connections == 2)
        assert await relayed(await conns.open("127.0.0.2"))
    assert any("(max_connections_per_address)" in m for m in refusal_lines(caplog, "at once"))
    assert any("(max_connections)" in m for m in refusal_lines(caplog, "at once"))


# -- timeouts ----------------------------------------------------------------------------


async def test_handshake_timeout_closes_slowloris(
    connections: list[Connections], caplog: pytest.LogCaptureFixture
) -> None:
    """A client that trickles its ClientHello a byte at a time is cut off after
    hello_timeout in total, however steadily it sends."""
    caplog.set_level(logging.INFO, LOGGER)
    async with running(ProxyLimits(hello_timeout=0.5)) as proxy:
        reader, writer = await track(connections, proxy).open()
        sent = 0
        closed = False
        async with asyncio.timeout(30):
            while sent < len(HELLO) - 1 and not closed:
                writer.write(HELLO[sent : sent + 1])
                sent += 1
                try:
                    async with asyncio.timeout(0.05):
                        closed = await reader.read(1) == b""
                except TimeoutError:
                    pass
                except ConnectionResetError:  # bytes it had not read when it closed
                    closed = True
        assert closed
        assert sent < len(HELLO) - 1  # cut off long before the last byte
        await wait_for(lambda: proxy.open_connections == 0)
    assert refusal_lines(caplog, "no TLS ClientHello within 0.5 s")


async def test_idle_timeout_closes_idle_relays_only(
    echo_server: EchoServer, connections: list[Connections], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    async with running(ProxyLimits(idle_timeout=0.3), echo_server) as proxy:
        conns = track(connections, proxy)
        idle, busy = await conns.open(), await conns.open()
        assert await relayed(idle)
        assert await relayed(busy)
        # The busy one talks every 0.1 s, across many idle timeouts, until the idle one
        # is closed; then it is still relayed.
        async with asyncio.timeout(30):
            while not idle[0].at_eof():
                busy[1].write(b"x")
                assert await busy[0].readexactly(1) == b"x"
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await idle[0].read()
        busy[1].write(b"still here")
        async with asyncio.timeout(30):
            assert await busy[0].readexactly(10) == b"still here"
        assert proxy.active_connections == 1
    assert refusal_lines(caplog, "idle for 0.3 s (idle_timeout)")


async def test_healthy_dask_client_outlives_the_idle_timeout(
    tls_cluster: TLSCluster, credentials: ClusterCredentials
) -> None:
    """A Dask client's main connection carries heartbeats; its pooled connections that
    sit idle are closed by the proxy, noticed by the client and opened again when needed.
    Heartbeats are made frequent here so that a short idle timeout can be used."""
    security = GatewaySecurity(
        tls_key=credentials.client_tls_key(), tls_cert=credentials.client_tls_cert()
    )
    config = {"distributed.client.heartbeat": "50ms"}
    async with running(ProxyLimits(idle_timeout=0.5)) as proxy:
        proxy.set_route(tls_cluster.name, tls_cluster.address)
        address = f"gateway://127.0.0.1:{proxy.port}/{tls_cluster.name}"
        with dask.config.set(config):
            async with Client(address, security=security, asynchronous=True, timeout=60) as client:
                # Concurrent calls open several pooled connections.
                await asyncio.gather(*(client.scheduler.identity() for _ in range(8)))
                assert proxy.active_connections > 2
                await wait_for(lambda: proxy.active_connections <= 2)  # idle ones closed
                # ... and the client saw them close (it would see it before any use
                # of them that comes later than a few milliseconds).
                pool = client.rpc.available.values()
                await wait_for(lambda: sum(not c.closed() for s in pool for c in s) <= 1)
                assert await client.submit(lambda x: x + 1, 1) == 2
                idents = await asyncio.gather(*(client.scheduler.identity() for _ in range(8)))
                assert {i["address"] for i in idents} == {tls_cluster.address}
                assert client.status == "running"


# -- resources -----------------------------------------------------------------------------


async def test_relay_threads_do_not_grow_with_connections(
    echo_server: EchoServer, connections: list[Connections]
) -> None:
    def proxy_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("hubgate-proxy-")]

    async with running(ProxyLimits(relay_threads=2), echo_server) as proxy:
        conns = track(connections, proxy)
        streams = [await conns.open(f"127.0.0.{2 + i % 8}") for i in range(300)]
        for stream in streams:
            assert await relayed(stream)
        assert proxy.active_connections == 300
        assert sorted(proxy_threads()) == [
            "hubgate-proxy-accept",
            "hubgate-proxy-relay-0",
            "hubgate-proxy-relay-1",
        ]
        for i, stream in enumerate(streams):  # every one still relays, both ways
            stream[1].write(b"%d" % i)
        for i, (reader, _) in enumerate(streams):
            async with asyncio.timeout(30):
                assert await reader.readexactly(len(b"%d" % i)) == b"%d" % i
        conns.close()
        await wait_for(lambda: proxy.open_connections == 0)
    assert proxy_threads() == []


async def test_max_connections_fits_the_descriptor_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        async with running(ProxyLimits(max_connections=10_000)) as proxy:
            # 1,024 - 256 kept for the service = 768 descriptors, 6 per connection.
            assert proxy.max_connections == 128
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert refusal_lines(caplog, "max_connections is 128 instead of 10000")


# -- IPv6 --------------------------------------------------------------------------------


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_clients_and_schedulers() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "::1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        limits = ProxyLimits(max_handshakes_per_address=1)
        async with SchedulerProxy("::1", 0, limits=limits) as proxy:
            proxy.set_route("alpha", f"[::1]:{port}")
            assert proxy.address == f"[::1]:{proxy.port}"
            held = await asyncio.open_connection("::1", proxy.port)
            await wait_for(lambda: proxy.handshakes == 1)
            over_reader, over_writer = await asyncio.open_connection("::1", proxy.port)
            assert await closed_at_once(over_reader)  # the same /64 as the held one
            over_writer.close()
            assert await relayed(held)
            held[1].close()
        server.close()


def test_address_key() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("not-an-ip") == "not-an-ip"


# -- logging and configuration -------------------------------------------------------------


def test_rate_limited_log(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    notes = RateLimitedLog(logging.getLogger("test.ratelimit"), interval=10, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "test.ratelimit")
    for i in range(5):
        notes.warning("cap", "refused %d", i)
    notes.warning("timeout", "slow")  # another kind is not held back
    now[0] += 10
    notes.warning("cap", "refused %d", 5)
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0",
        "slow",
        "refused 5 (and 4 more like it since the last such line)",
    ]


def test_service_traits_reach_the_proxy() -> None:
    service = HubgateService()
    names = [n for n in service.trait_names(config=True) if n.startswith("scheduler_proxy_")]
    for name in names:
        assert service.traits()[name].help, name
    service.scheduler_proxy_max_handshakes_per_address = 7
    service.scheduler_proxy_idle_timeout = 0
    service.scheduler_proxy_hello_timeout = 2.5
    limits = service._proxy_limits()
    assert limits.max_handshakes_per_address == 7
    assert limits.idle_timeout == 0
    assert limits.hello_timeout == 2.5
    assert limits.max_connections == ProxyLimits().max_connections
    assert len(names) == 1 + len(fields(ProxyLimits))  # and scheduler_proxy_address


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="hello_timeout"):
        ProxyLimits(hello_timeout=0)
    with pytest.raises(ValueError, match="relay_threads"):
        ProxyLimits(relay_threads=0)
    with pytest.raises(ValueError, match="max_connections"):
        ProxyLimits(max_connections=-1)
