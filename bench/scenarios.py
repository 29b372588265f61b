"""What is measured, identically on both sides, with the official ``dask_gateway`` client.

Each function takes a :class:`Side` (where a gateway is and the hub token to use) and
returns raw samples in seconds (or MiB/s); :func:`one_round` runs them all once and
adds them to a samples dict, which ``run.py`` fills for both sides in turn.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import proxy_bench
import psutil
from dask_gateway import Gateway, GatewayCluster, JupyterHubAuth
from dask_gateway.client import ClusterStatus

# proxy_bench's task function must travel by value (schedulers and workers cannot
# import bench/), and distributed pickles by value only what comes from __main__.
proxy_bench._inc.__module__ = "__main__"

WORKERS = 4
MANY_CLUSTERS = 10
LIST_CALLS = 50
STATUS_POLL = 0.02  # seconds between status polls while waiting for STOPPED
TIMEOUT = 300.0  # no step should take this long, even on a loaded machine


@dataclass
class Side:
    label: str
    address: str
    proxy_address: str
    token: str
    pids: Callable[[], dict[str, int]]  # the gateway's own processes, for memory
    service_labels: tuple[str, ...]  # which of them count as "the service"
    clusters_dir: Path  # the cluster processes run in folders under it
    proxy_label: str  # which of ``pids()`` relays scheduler connections

    def gateway(self) -> Gateway:
        return Gateway(
            self.address,
            proxy_address=self.proxy_address,
            auth=JupyterHubAuth(api_token=self.token),
            asynchronous=True,
        )


@dataclass
class ProxySettings:
    pings: int = 200
    tasks: int = 500
    payload_mib: int = 32  # the standalone proxy_bench's; wire_round uses sizes_mib
    repeats: int = 3  # scatter/gather rounds per payload size and path
    sizes_mib: tuple[int, ...] = (1, 4, 16, 64, 256)


Samples = dict[str, list[float]]


def _add(samples: Samples, key: str, value: float) -> None:
    samples.setdefault(key, []).append(value)


async def _deadline(coro: Any, what: str) -> Any:
    try:
        return await asyncio.wait_for(coro, TIMEOUT)
    except TimeoutError:
        raise RuntimeError(f"{what} took longer than {TIMEOUT:g} s") from None


async def wait_for_status(gateway: Gateway, name: str, wanted: ClusterStatus) -> None:
    """Poll the cluster's status (GET without ?wait) until it is ``wanted``."""

    async def poll() -> None:
        while True:
            report = await gateway.get_cluster(name)
            if report.status is wanted:
                return
            if report.status in (ClusterStatus.FAILED, ClusterStatus.STOPPED):
                raise RuntimeError(f"cluster {name} is {report.status.name}, not {wanted.name}")
            await asyncio.sleep(STATUS_POLL)

    await _deadline(poll(), f"cluster {name} reaching {wanted.name}")


async def timed_create(gateway: Gateway) -> tuple[GatewayCluster, float]:
    """create → RUNNING: ``new_cluster()`` until it returns (the cluster is RUNNING and
    the client has its scheduler connection)."""
    start = time.perf_counter()
    cluster = await _deadline(gateway.new_cluster(shutdown_on_close=False), "new_cluster")
    return cluster, time.perf_counter() - start


async def timed_scale(cluster: GatewayCluster, n: int) -> float:
    """scale 0 → n: until the scheduler reports n workers to the client (the client's
    own worker-status stream, pushed by the scheduler)."""
    start = time.perf_counter()
    await cluster.scale(n)

    async def connected() -> None:
        # scheduler_info is replaced by the client's stream task; nothing to wait on
        while len(cluster.scheduler_info.get("workers", {})) < n:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    await _deadline(connected(), f"{n} workers connecting")
    return time.perf_counter() - start


async def timed_stop(gateway: Gateway, name: str) -> float:
    """shutdown → STOPPED: DELETE, then polling until the gateway reports STOPPED."""
    start = time.perf_counter()
    await gateway.stop_cluster(name)
    await wait_for_status(gateway, name, ClusterStatus.STOPPED)
    return time.perf_counter() - start


def rss_mib(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for label, pid in pids.items():
        try:
            out[label] = psutil.Process(pid).memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            out[label] = 0.0
    return out


def cluster_processes_pss_mib(clusters_dir: Path) -> float:
    """Proportional set size of every scheduler and worker process (they run in a
    folder under ``clusters_dir``): pages shared between them count once in total."""
    import psutil

    root = str(clusters_dir) + os.sep
    total = 0
    for proc in psutil.process_iter():
        try:
            if proc.cwd().startswith(root):
                total += proc.memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


async def lifecycle_round(side: Side, samples: Samples) -> None:
    """One cluster through create, scale to 4, stop; then a second cluster through
    create and stop with no workers."""
    async with side.gateway() as gateway:
        cluster, seconds = await timed_create(gateway)
        _add(samples, "create_s", seconds)
        try:
            _add(samples, "scale_0_to_4_s", await timed_scale(cluster, WORKERS))
        finally:
            await cluster.close(shutdown=False)
        _add(samples, "stop_4_workers_s", await timed_stop(gateway, cluster.name))

        cluster, seconds = await timed_create(gateway)
        _add(samples, "create_s", seconds)
        await cluster.close(shutdown=False)
        _add(samples, "stop_0_workers_s", await timed_stop(gateway, cluster.name))


async def many_clusters_round(side: Side, samples: Samples) -> None:
    """10 clusters (no workers): list_clusters p50 and the gateway's memory."""
    async with side.gateway() as gateway:
        names = [await gateway.submit() for _ in range(MANY_CLUSTERS)]
        try:
            await asyncio.gather(
                *(wait_for_status(gateway, name, ClusterStatus.RUNNING) for name in names)
            )
            await asyncio.sleep(1.0)  # let start-up bookkeeping settle
            times = []
            for _ in range(LIST_CALLS):
                start = time.perf_counter()
                listed = await gateway.list_clusters()
                times.append(time.perf_counter() - start)
            if len(listed) != MANY_CLUSTERS:
                raise RuntimeError(f"list_clusters gave {len(listed)}, not {MANY_CLUSTERS}")
            _add(samples, "list_clusters_p50_ms", 1000 * statistics.median(times))
            memory = rss_mib(side.pids())
            service = sum(mib for label, mib in memory.items() if label in side.service_labels)
            _add(samples, "memory_mib", service)
            _add(samples, "memory_with_helpers_mib", sum(memory.values()))
            for label, mib in memory.items():
                _add(samples, f"memory_mib[{label}]", mib)
            _add(
                samples,
                "clusters_pss_mib",
                await asyncio.to_thread(cluster_processes_pss_mib, side.clusters_dir),
            )
        finally:
            await asyncio.gather(*(gateway.stop_cluster(name) for name in names))
            await asyncio.gather(
                *(wait_for_status(gateway, name, ClusterStatus.STOPPED) for name in names)
            )


async def _client(address: str, security: Any) -> Any:
    import dask_gateway.comm  # noqa: F401  (registers gateway://)
    from distributed import Client

    client = await Client(address, security=security, asynchronous=True)
    await client.wait_for_workers(1)
    return client


async def wire_round(side: Side, samples: Samples, proxy: ProxySettings) -> None:
    """A cluster with one worker, as a user's client sees it through the side's
    scheduler proxy, and the same scheduler at its own TLS address with the cluster's
    credentials ("direct", no proxy: the floor the proxy is held to).

    Samples: ``task_p50_ms``/``task_p99_ms`` (``proxy.tasks`` tasks, one at a time),
    ``ping_p50_ms``/``ping_p99_ms`` (a scheduler RPC), the same with ``direct_`` before
    them, and per payload N MiB ``scatter_<N>mib_mib_s``/``gather_<N>mib_mib_s`` and
    ``direct_scatter_...``/``direct_gather_...`` (every round's rate, ``proxy.repeats``
    rounds, the paths taking turns per size), and ``scatter_<N>mib_vs_direct``: the
    median rate through the proxy over the median direct one, in this round;
    ``scatter_vs_direct``/``gather_vs_direct``: the same over all sizes at once (all
    MiB over all seconds per path), where one slow sample weighs what its bytes weigh.

    And what the transfers cost in CPU, over all sizes (:class:`CpuUse`):
    ``cpu_busy_direct``/``cpu_busy_proxied``, the share of the machine's cores busy
    while each path moved its bytes, ``cpu_ms_per_mib_direct``/``_proxied``, the
    machine's CPU time (every process and the kernel) per MiB moved, and
    ``proxy_cpu_ms_per_mib``, the proxy process's own CPU time per MiB it relayed. A proxy can keep ``proxy / direct`` near 1 only if
    the direct path leaves a core's share idle for it."""
    cpu = CpuUse(side.pids()[side.proxy_label])
    async with side.gateway() as gateway:
        cluster = await _deadline(gateway.new_cluster(shutdown_on_close=False), "new_cluster")
        try:
            await cluster.scale(1)
            proxied = await _deadline(
                _client(cluster.scheduler_address, cluster.security), "a worker"
            )
            direct = None
            try:
                # the scheduler's own address, as it tells its clients
                own_address = proxied.scheduler_info()["address"]
                direct = await _deadline(_client(own_address, cluster.security), "direct TLS")
                await _deadline(_latency(proxied, direct, samples, proxy), "round trips")
                moved: dict[str, list[float]] = {}  # path and what: [MiB, seconds]
                for mib in proxy.sizes_mib:
                    rates = await _deadline(
                        _transfers(proxied, direct, mib, samples, proxy, cpu), "transfers"
                    )
                    for name, values in rates.items():
                        total = moved.setdefault(name, [0.0, 0.0])
                        total[0] += mib * len(values)
                        total[1] += sum(mib / v for v in values)
                for what in ("scatter", "gather"):
                    (mib, seconds), (direct_mib, direct_seconds) = (
                        moved[what],
                        moved[f"direct_{what}"],
                    )
                    _add(
                        samples,
                        f"{what}_vs_direct",
                        (mib / seconds) / (direct_mib / direct_seconds),
                    )
                cpu.add_to(samples)
            finally:
                for client in (direct, proxied):
                    if client is not None:
                        await client.close()
        finally:
            await cluster.shutdown()


async def _latency(proxied: Any, direct: Any, samples: Samples, proxy: ProxySettings) -> None:
    for prefix, client in (("", proxied), ("direct_", direct)):
        tasks = await proxy_bench.task_round_trips(client, proxy.tasks)
        pings = await proxy_bench.ping_round_trips(client, proxy.pings)
        for what, times in (("task", tasks), ("ping", pings)):
            _add(samples, f"{prefix}{what}_p50_ms", 1000 * statistics.median(times))
            _add(samples, f"{prefix}{what}_p99_ms", 1000 * proxy_bench.percentile(times, 0.99))


class CpuUse:
    """CPU time of the whole machine and of the proxy process, added up over the
    transfers of each path."""

    def __init__(self, proxy_pid: int) -> None:
        self.proxy = psutil.Process(proxy_pid)
        self.busy = {"direct_": 0.0, "": 0.0}  # CPU seconds, all cores
        self.elapsed = {"direct_": 0.0, "": 0.0}
        self.proxy_seconds = 0.0
        self.mib = {"direct_": 0.0, "": 0.0}

    @staticmethod
    def _machine_busy() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def _proxy_cpu(self) -> float:
        times = self.proxy.cpu_times()
        return times.user + times.system

    async def measure(self, prefix: str, mib: int, transfer: Any) -> Any:
        """Run ``transfer`` (a scatter and a gather of ``mib`` MiB on path ``prefix``)."""
        busy, proxy, start = self._machine_busy(), self._proxy_cpu(), time.perf_counter()
        result = await transfer
        self.elapsed[prefix] += time.perf_counter() - start
        self.busy[prefix] += self._machine_busy() - busy
        self.mib[prefix] += 2 * mib  # there and back
        if not prefix:
            self.proxy_seconds += self._proxy_cpu() - proxy
        return result

    def add_to(self, samples: Samples) -> None:
        cores = psutil.cpu_count() or 1
        for prefix, path in (("direct_", "direct"), ("", "proxied")):
            _add(samples, f"cpu_busy_{path}", self.busy[prefix] / (self.elapsed[prefix] * cores))
            _add(samples, f"cpu_ms_per_mib_{path}", 1000 * self.busy[prefix] / self.mib[prefix])
        _add(samples, "proxy_cpu_ms_per_mib", 1000 * self.proxy_seconds / self.mib[""])


async def _transfers(
    proxied: Any, direct: Any, mib: int, samples: Samples, proxy: ProxySettings, cpu: CpuUse
) -> dict[str, list[float]]:
    """Scatter and gather ``mib`` MiB ``proxy.repeats`` times per path; the rates (MiB/s)
    by path and what ("scatter", "direct_scatter", ...)."""
    rates: dict[str, list[float]] = {}
    for _ in range(proxy.repeats):  # one of each path at a time: load hits both alike
        for prefix, client in (("", proxied), ("direct_", direct)):
            scatters, gathers = await cpu.measure(
                prefix, mib, proxy_bench.transfer_rates(client, mib, 1)
            )
            rates.setdefault(f"{prefix}scatter", []).extend(scatters)
            rates.setdefault(f"{prefix}gather", []).extend(gathers)
    for name, values in rates.items():
        for value in values:
            _add(samples, f"{name}_{mib}mib_mib_s", value)
    for what in ("scatter", "gather"):
        ratio = statistics.median(rates[what]) / statistics.median(rates[f"direct_{what}"])
        _add(samples, f"{what}_{mib}mib_vs_direct", ratio)
    return rates


async def one_round(side: Side, samples: Samples, proxy: ProxySettings) -> None:
    await lifecycle_round(side, samples)
    await wire_round(side, samples, proxy)
    await many_clusters_round(side, samples)
