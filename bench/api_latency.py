"""API latency and throughput: ``list_clusters`` as a user feels it, on both sides.

``run.py`` calls :func:`api_round` in every round (``run.py --only api`` runs these
measurements alone).

For 1 and for 10 running clusters (no workers) of one user, each address a side offers
gets ``calls`` sequential ``list_clusters()`` calls of the official client (p50, p99)
and then ``load_seconds`` of ``CONCURRENCY`` calls in flight at once from the same
client (requests per second). The client is the same code on both sides, so its own
cost is in both figures alike.

hubgate is measured at two addresses: through the hub's proxy
(``/services/dask-gateway`` on the hub's public URL, what a program outside the hub
uses) and at the service's own URL (what single-user servers are given, as a
deployment does where the service is reachable from them). dask-gateway is measured at
its Go proxy, the address it gives its users.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

from dask_gateway import Gateway, JupyterHubAuth
from dask_gateway.client import ClusterStatus
from proxy_bench import percentile

CLUSTER_COUNTS = (1, 10)
CONCURRENCY = 16
TIMEOUT = 300.0


@dataclass(frozen=True)
class ApiAddress:
    """One address a side's users call its API at."""

    label: str  # "" for the side's main address, else a suffix for the sample keys
    url: str


@dataclass(frozen=True)
class ApiSettings:
    calls: int = 300
    load_seconds: float = 3.0


def _gateway(url: str, proxy_address: str, token: str) -> Gateway:
    return Gateway(
        url, proxy_address=proxy_address, auth=JupyterHubAuth(api_token=token), asynchronous=True
    )


async def sequential_latency(gateway: Gateway, calls: int, expected: int) -> tuple[float, float]:
    """p50 and p99 (ms) of ``calls`` ``list_clusters()`` one after another."""
    for _ in range(10):  # the first call logs in (401, then the token), and warms up
        await gateway.list_clusters()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        listed = await gateway.list_clusters()
        times.append(time.perf_counter() - start)
    if len(listed) != expected:
        raise RuntimeError(f"list_clusters gave {len(listed)} clusters, not {expected}")
    return 1000 * statistics.median(times), 1000 * percentile(times, 0.99)


async def requests_per_second(gateway: Gateway, seconds: float) -> float:
    """``list_clusters()`` answered per second with ``CONCURRENCY`` calls in flight."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await gateway.list_clusters()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - start)


async def measure_addresses(
    addresses: list[ApiAddress],
    proxy_address: str,
    token: str,
    settings: ApiSettings,
    expected: int,
    samples: dict[str, list[float]],
) -> None:
    for address in addresses:
        async with _gateway(address.url, proxy_address, token) as gateway:
            p50, p99 = await sequential_latency(gateway, settings.calls, expected)
            rate = await requests_per_second(gateway, settings.load_seconds)
        suffix = f"_{expected}c" + (f"_{address.label}" if address.label else "")
        samples.setdefault(f"list_p50_ms{suffix}", []).append(p50)
        samples.setdefault(f"list_p99_ms{suffix}", []).append(p99)
        samples.setdefault(f"list_rps{suffix}", []).append(rate)


async def wait_all(gateway: Gateway, names: list[str], wanted: ClusterStatus) -> None:
    """Poll each cluster's status until all are ``wanted``."""

    async def one(name: str) -> None:
        while True:
            if (await gateway.get_cluster(name)).status is wanted:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(asyncio.gather(*(one(n) for n in names)), TIMEOUT)


async def api_round(
    addresses: list[ApiAddress],
    proxy_address: str,
    token: str,
    settings: ApiSettings,
    samples: dict[str, list[float]],
) -> None:
    """Start clusters up to each of CLUSTER_COUNTS and measure every address at each."""
    async with _gateway(addresses[0].url, proxy_address, token) as gateway:
        names: list[str] = []
        try:
            for count in CLUSTER_COUNTS:
                while len(names) < count:
                    names.append(await gateway.submit())
                await wait_all(gateway, names, ClusterStatus.RUNNING)
                await asyncio.sleep(0.5)  # let start-up bookkeeping settle
                await measure_addresses(addresses, proxy_address, token, settings, count, samples)
        finally:
            await asyncio.gather(*(gateway.stop_cluster(name) for name in names))
            await wait_all(gateway, names, ClusterStatus.STOPPED)
