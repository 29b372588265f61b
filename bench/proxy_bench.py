"""Benchmark of the scheduler (SNI) proxy: hubgate's SchedulerProxy against dask-gateway's.

Library use (the overall benchmark imports these):

- :func:`measure_client` — given a scheduler address (``tls://...`` direct, or
  ``gateway://proxy:port/<name>``) and a ``distributed`` security object, the p50 round
  trip of a scheduler ping and of a tiny task, and scatter/gather MiB/s.
- :func:`task_round_trips`, :func:`ping_round_trips`, :func:`transfer_rates` — the raw
  samples of one client (what ``scenarios.wire_round`` adds up on both sides).
- :func:`measure_raw` — the proxy alone, no TLS or Dask on top: 1-byte ping-pong latency
  to an echo server and one-way MiB/s to a byte-counting sink, both through it.

Standalone (``python bench/proxy_bench.py [--json out.json]``): starts a real TLS
scheduler and one worker in subprocesses, the echo and sink servers, hubgate's proxy in its own
process (as in the service) and dask-gateway's Go proxy, then measures direct vs
hubgate vs Go, prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubgate.hub_service.tls import ClusterCredentials, generate_cluster_credentials

__all__ = [
    "client_security",
    "fake_client_hello",
    "measure_client",
    "measure_raw",
    "percentile",
    "ping_round_trips",
    "task_round_trips",
    "transfer_rates",
    "run_standalone",
]

PYTHON = sys.executable
CLUSTER = "bench"
ECHO = "echo"
SINK = "sink"

_SCHEDULER = """
import asyncio, sys
from distributed import Scheduler
from distributed.security import Security
d = sys.argv[1]
async def main():
    sec = Security(tls_ca_file=f"{d}/ca.crt", tls_scheduler_cert=f"{d}/scheduler.crt",
                   tls_scheduler_key=f"{d}/scheduler.key", require_encryption=True)
    async with Scheduler(security=sec, protocol="tls", host="127.0.0.1", port=0,
                         dashboard=False) as s:
        print(s.address, flush=True)
        await s.finished()
asyncio.run(main())
"""

_WORKER = """
import asyncio, sys
from distributed import Worker
from distributed.security import Security
d, address = sys.argv[1], sys.argv[2]
async def main():
    sec = Security(tls_ca_file=f"{d}/ca.crt", tls_worker_cert=f"{d}/worker.crt",
                   tls_worker_key=f"{d}/worker.key", require_encryption=True)
    async with Worker(address, security=sec, nthreads=1, host="127.0.0.1") as w:
        print(w.address, flush=True)
        await w.finished()
asyncio.run(main())
"""

# The far ends of the raw measurements: an echo server (ping-pong) and a sink that
# counts the bytes it was announced and answers with the count (one-way bulk transfer).
_RAW_SERVERS = """
import socket, socketserver, threading
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(1 << 16)
        view = memoryview(buf)
        while n := self.request.recv_into(buf):
            self.request.sendall(view[:n])
class Sink(socketserver.BaseRequestHandler):
    def handle(self):
        # The ClientHello is for the proxy only: a length-prefixed ClientHello, then
        # an 8-byte count and that many bytes; answer with the count once all arrived.
        # (No half-close: dask-gateway's proxy closes both ways on the first end.)
        buf = bytearray(1 << 20)
        header = self.request.recv(5, socket.MSG_WAITALL)
        self.request.recv(int.from_bytes(header[3:5]), socket.MSG_WAITALL)
        remaining = expected = int.from_bytes(self.request.recv(8, socket.MSG_WAITALL))
        while remaining and (n := self.request.recv_into(buf, min(remaining, len(buf)))):
            remaining -= n
        self.request.sendall((expected - remaining).to_bytes(8))
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
echo, sink = Server(("127.0.0.1", 0), Echo), Server(("127.0.0.1", 0), Sink)
threading.Thread(target=sink.serve_forever, daemon=True).start()
print(f"127.0.0.1:{echo.server_address[1]} 127.0.0.1:{sink.server_address[1]}", flush=True)
echo.serve_forever()
"""

# hubgate's proxy in its own process, as it runs inside the service.
_HUBGATE_PROXY = """
import asyncio, sys
from hubgate.hub_service.scheduler_proxy import SchedulerProxy
async def main():
    proxy = SchedulerProxy("127.0.0.1", 0)
    for route in sys.argv[1:]:
        name, target = route.split("=", 1)
        proxy.set_route(name, target)
    await proxy.start()
    print(proxy.address, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def client_security(credentials: ClusterCredentials) -> Any:
    """What the official client builds from the cluster JSON's ``tls_cert``/``tls_key``."""
    from dask_gateway.client import GatewaySecurity

    return GatewaySecurity(
        tls_key=credentials.client_tls_key(), tls_cert=credentials.client_tls_cert()
    )


def _inc(x: int) -> int:
    return x + 1


def _summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": 1000 * statistics.median(samples),
        "p90_ms": 1000 * samples[int(0.9 * (len(samples) - 1))],
        "mean_ms": 1000 * statistics.fmean(samples),
    }


async def measure_client(
    address: str,
    security: Any,
    *,
    pings: int = 500,
    tasks: int = 300,
    payload_mib: int = 32,
    repeats: int = 3,
) -> dict[str, Any]:
    """Round trips and scatter/gather speed of a ``distributed.Client`` at ``address``.

    ``ping`` is a scheduler RPC (``ncores``) over the client's connection pool;
    ``task`` is ``submit(inc, i)`` then its result; scatter/gather go through the
    scheduler (``direct=False``), so the payload crosses the proxy. MiB/s is the best of
    ``repeats``.
    """
    import dask_gateway.comm  # noqa: F401  (registers gateway://)
    from distributed import Client

    async with Client(address, security=security, asynchronous=True) as client:
        await client.wait_for_workers(1)
        await ping_round_trips(client, 20)  # warm the connections
        ping_times = await ping_round_trips(client, pings)
        task_times = await task_round_trips(client, tasks)
        scatter_rates, gather_rates = await transfer_rates(client, payload_mib, repeats)

    return {
        "ping": _summary(ping_times),
        "task": _summary(task_times),
        "scatter_mib_s": max(scatter_rates),
        "gather_mib_s": max(gather_rates),
    }


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def task_round_trips(client: Any, tasks: int, warmup: int = 20) -> list[float]:
    """Seconds from ``submit(inc, i)`` to its result, one task at a time, ``tasks``
    times (after ``warmup`` untimed ones that open the connections)."""
    for i in range(warmup):
        await client.submit(_inc, i, pure=False)
    times = []
    for i in range(tasks):
        start = time.perf_counter()
        await client.submit(_inc, i, pure=False)
        times.append(time.perf_counter() - start)
    return times


async def ping_round_trips(client: Any, pings: int) -> list[float]:
    """Seconds of a scheduler RPC (``ncores``), ``pings`` times."""
    times = []
    for _ in range(pings):
        start = time.perf_counter()
        await client.scheduler.ncores()
        times.append(time.perf_counter() - start)
    return times


async def transfer_rates(client: Any, mib: int, rounds: int) -> tuple[list[float], list[float]]:
    """MiB/s of ``rounds`` scatters and gathers of ``mib`` MiB through the scheduler
    (``direct=False``: the payload crosses the client's connection to the scheduler,
    the one a proxy relays), each timed until the client has the answer."""
    payload = os.urandom(mib * 2**20)
    scatters, gathers = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        [future] = await client.scatter([payload], direct=False, hash=False)
        scatters.append(mib / (time.perf_counter() - start))
        start = time.perf_counter()
        data = await client.gather(future, direct=False)
        gathers.append(mib / (time.perf_counter() - start))
        if len(data) != len(payload):
            raise RuntimeError(f"gathered {len(data)} bytes, scattered {len(payload)}")
        await client.cancel(future)
        del future, data
    return scatters, gathers


def fake_client_hello(server_name: str) -> bytes:
    """A real ClientHello (from Python's ssl) for ``server_name``."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ctx = ssl.create_default_context()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def _recv_exactly(sock: socket.socket, n: int) -> None:
    buf = bytearray(min(n, 2**20))
    while n:
        got = sock.recv_into(buf, min(n, len(buf)))
        if not got:
            raise ConnectionError("closed early")
        n -= got


def measure_raw(
    echo_address: tuple[str, int],
    sink_address: tuple[str, int],
    echo_name: str,
    sink_name: str,
    *,
    pings: int = 3000,
    mib: int = 512,
) -> dict[str, Any]:
    """The relay alone, no TLS or Dask on top: p50 of a 1-byte ping-pong with an echo
    server routed as ``echo_name``, and MiB/s of ``mib`` MiB sent one way to a sink routed
    as ``sink_name`` (timed until the sink confirms it received them all).
    Blocking: call it in a thread from async code."""
    hello = fake_client_hello(echo_name)
    with socket.create_connection(echo_address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(hello)
        _recv_exactly(sock, len(hello))
        times = []
        for _ in range(pings):
            start = time.perf_counter()
            sock.sendall(b"x")
            _recv_exactly(sock, 1)
            times.append(time.perf_counter() - start)

    hello = fake_client_hello(sink_name)
    chunk = os.urandom(2**20)
    with socket.create_connection(sink_address) as sock:
        start = time.perf_counter()
        sock.sendall(hello + (mib * 2**20).to_bytes(8))
        for _ in range(mib):
            sock.sendall(chunk)
        count = int.from_bytes(_recv_all(sock))
        elapsed = time.perf_counter() - start
    if count != mib * 2**20:
        raise RuntimeError(f"sink got {count} bytes, expected {mib * 2**20}")
    return {"ping": _summary(times), "oneway_mib_s": mib / elapsed}


def _recv_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(64):
        data += chunk
    return data


# -- standalone ------------------------------------------------------------------------


@dataclass
class _Process:
    proc: asyncio.subprocess.Process
    first_line: str


async def _spawn(args: list[str], what: str, env: dict[str, str] | None = None) -> _Process:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode().strip()  # type: ignore[union-attr]
    except TimeoutError:
        line = ""
    if not line:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{what} did not start")
    return _Process(proc, line)


async def _stop(process: _Process) -> None:
    if process.proc.returncode is None:
        process.proc.terminate()
        try:
            async with asyncio.timeout(10):
                await process.proc.wait()
        except TimeoutError:
            process.proc.kill()
            await process.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_for_route(address: str, server_name: str) -> None:
    """Until the proxy routes ``server_name`` (the Go proxy loads routes on its own)."""
    hello = fake_client_hello(server_name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(*_host_port(address))
            writer.write(hello)
            await writer.drain()
            async with asyncio.timeout(2):
                echoed = await reader.readexactly(len(hello))
            writer.close()
            if echoed == hello:
                return
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"proxy at {address} never routed {server_name}")


@contextlib.asynccontextmanager
async def _go_proxy(routes: dict[str, str]) -> AsyncIterator[str | None]:
    """dask-gateway's Go proxy, fed ``routes`` by a tiny route API; ``None`` if absent."""
    try:
        import dask_gateway_server.proxy.core as core
    except ImportError:
        yield None
        return
    exe = Path(core.__file__).with_name("dask-gateway-proxy")
    if not exe.exists():
        yield None
        return
    from aiohttp import web

    token = secrets.token_hex(16)

    async def route_api(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"token {token}":
            raise web.HTTPUnauthorized()
        if request.query.get("watch"):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await asyncio.Event().wait()  # no changes, ever; ends when the proxy leaves
        table = [{"kind": "SNI", "sni": n, "target": t} for n, t in routes.items()]
        return web.json_response({"routes": table, "id": 0})

    app = web.Application()
    app.router.add_get("/api/v1/routes", route_api)
    runner = web.AppRunner(app)
    await runner.setup()
    api_port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", api_port).start()
    http_port, tcp_port = _free_port(), _free_port()
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        "-address",
        f"127.0.0.1:{http_port}",
        "-tcp-address",
        f"127.0.0.1:{tcp_port}",
        "-api-url",
        f"http://127.0.0.1:{api_port}/api/v1/routes",
        "-log-level",
        "WARN",
        env={**os.environ, "DASK_GATEWAY_PROXY_TOKEN": token},
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield f"127.0.0.1:{tcp_port}"
    finally:
        proc.terminate()
        await proc.wait()
        await runner.cleanup()


def _write_credentials(credentials: ClusterCredentials, folder: Path) -> None:
    for role in ("scheduler", "worker"):
        for name, data in credentials.credentials_files(role).items():
            path = folder / name
            path.write_bytes(data)
            path.chmod(0o600)


async def run_standalone(
    *,
    pings: int = 500,
    tasks: int = 300,
    payload_mib: int = 32,
    raw_mib: int = 512,
    rounds: int = 3,
) -> dict[str, Any]:
    """Direct vs hubgate's proxy vs dask-gateway's Go proxy, on one real TLS cluster.

    The paths take turns for ``rounds`` rounds (so background load hits them alike);
    each number is the median over the rounds, and ``rounds`` keeps every one.
    """
    credentials = generate_cluster_credentials(CLUSTER)
    security = client_security(credentials)
    folder = Path(tempfile.mkdtemp(prefix="hubgate-proxy-bench-"))
    processes: list[_Process] = []
    per_round: dict[str, list[dict[str, Any]]] = {}
    try:
        _write_credentials(credentials, folder)
        scheduler = await _spawn([PYTHON, "-c", _SCHEDULER, str(folder)], "scheduler")
        processes.append(scheduler)
        worker = await _spawn([PYTHON, "-c", _WORKER, str(folder), scheduler.first_line], "worker")
        processes.append(worker)
        raw_servers = await _spawn([PYTHON, "-c", _RAW_SERVERS], "echo server")
        processes.append(raw_servers)
        echo_address, sink_address = raw_servers.first_line.split()
        routes = {
            CLUSTER: scheduler.first_line.removeprefix("tls://"),
            ECHO: echo_address,
            SINK: sink_address,
        }
        hubgate = await _spawn(
            [PYTHON, "-c", _HUBGATE_PROXY, *(f"{n}={t}" for n, t in routes.items())],
            "hubgate proxy",
        )
        processes.append(hubgate)

        async with _go_proxy(routes) as go_address:
            paths: dict[str, str | None] = {"direct": None, "hubgate": hubgate.first_line}
            if go_address is None:
                print("dask-gateway-server is not installed: its proxy is skipped", file=sys.stderr)
            else:
                paths["dask-gateway"] = go_address
                await _wait_for_route(go_address, f"daskgateway-{ECHO}")
            for _ in range(rounds):
                for label, proxy in paths.items():
                    if proxy is None:
                        address = scheduler.first_line
                        echo, sink = _host_port(echo_address), _host_port(sink_address)
                    else:
                        address = f"gateway://{proxy}/{CLUSTER}"
                        echo = sink = _host_port(proxy)
                    result = await measure_client(
                        address, security, pings=pings, tasks=tasks, payload_mib=payload_mib
                    )
                    result["raw"] = await asyncio.to_thread(
                        measure_raw,
                        echo,
                        sink,
                        f"daskgateway-{ECHO}",
                        f"daskgateway-{SINK}",
                        mib=raw_mib,
                    )
                    per_round.setdefault(label, []).append(result)
    finally:
        for process in reversed(processes):
            await _stop(process)
        shutil.rmtree(folder, ignore_errors=True)
    return {label: {**_median(rs), "rounds": rs} for label, rs in per_round.items()}


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Key-wise median of nested dicts of numbers."""
    first = results[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = _median([r[key] for r in results])
        else:
            out[key] = statistics.median(r[key] for r in results)
    return out


def format_table(results: dict[str, Any]) -> str:
    """One line per path: Dask-level numbers, then the raw relay's."""
    columns = [
        ("ping p50", "ms", lambda r: f"{r['ping']['p50_ms']:.3f}"),
        ("task p50", "ms", lambda r: f"{r['task']['p50_ms']:.3f}"),
        ("scatter", "MiB/s", lambda r: f"{r['scatter_mib_s']:.0f}"),
        ("gather", "MiB/s", lambda r: f"{r['gather_mib_s']:.0f}"),
        ("raw p50", "ms", lambda r: f"{r['raw']['ping']['p50_ms']:.4f}"),
        ("raw 1-way", "MiB/s", lambda r: f"{r['raw']['oneway_mib_s']:.0f}"),
    ]
    lines = [
        f"{'path':<14}" + "".join(f"{title:>11}" for title, _, _ in columns),
        f"{'':<14}" + "".join(f"{unit:>11}" for _, unit, _ in columns),
    ]
    for label, r in results.items():
        lines.append(f"{label:<14}" + "".join(f"{cell(r):>11}" for _, _, cell in columns))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="proxy_bench.json", help="where to write results")
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--payload-mib", type=int, default=32)
    parser.add_argument("--raw-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    # distributed logs a harmless traceback when a client closes its batched stream.
    logging.getLogger("distributed.batched").setLevel(logging.WARNING)
    results = asyncio.run(
        run_standalone(
            pings=args.pings,
            tasks=args.tasks,
            payload_mib=args.payload_mib,
            raw_mib=args.raw_mib,
            rounds=args.rounds,
        )
    )
    print(format_table(results))
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
