"""Direct connect against the scheduler proxy, on the same cluster, with hubgate's client.

``measure(address, token)`` creates one hubgate cluster (one worker), checks which
address hubgate's client picks by default (``gateway.direct-connect: auto``), then opens
two ``distributed.Client``s with the cluster's credentials: one at the scheduler's own
``tls://`` address (direct) and one at ``gateway://<proxy>/<id>`` (through the service's
SNI proxy). It interleaves their rounds (direct first in even rounds, proxy first in odd
ones) and reports, per path:

- task round trip: ``submit(operator.add, i, 1)`` then its result, p50/p99/mean over
  ``tasks`` samples (>= 500), after a warm-up;
- scheduler RPC round trip (``ncores``, no worker involved), as many samples;
- scatter and gather through the scheduler (``direct=False``, so the bytes take the
  path under test) of 1, 16, 64 and 256 MiB: seconds and MiB/s, min/median/max over
  ``rounds`` rounds.

Run on its own (starts a JupyterHub with hubgate as ``bench/hubgate_side.py`` does)::

    flock /tmp/hubgate-bench.lock .venv/bin/python bench/direct_connect.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import operator
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from proxy_bench import percentile

TASKS = 500
SIZES_MIB = (1, 16, 64, 256)
ROUNDS = 5
WARMUP_TASKS = 30
TIMEOUT = 600.0  # no step should take this long, even on a loaded machine
# 256 MiB objects pass the worker: more room than the demo's default 1 GiB
CLUSTER_OPTIONS = {"worker_memory": 4}
PATHS = ("direct", "proxy")


def _latency(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": 1000 * statistics.median(samples),
        "p99_ms": 1000 * percentile(samples, 0.99),
        "mean_ms": 1000 * statistics.fmean(samples),
    }


def _spread(seconds: list[float], mib: int) -> dict[str, float]:
    return {
        "n": len(seconds),
        "min_s": min(seconds),
        "median_s": statistics.median(seconds),
        "max_s": max(seconds),
        # fastest, median and slowest rates
        "max_mib_s": mib / min(seconds),
        "median_mib_s": mib / statistics.median(seconds),
        "min_mib_s": mib / max(seconds),
    }


async def _task_round(client: Any, count: int, into: list[float]) -> None:
    for i in range(count):
        start = time.perf_counter()
        result = await client.submit(operator.add, i, 1, pure=False)
        into.append(time.perf_counter() - start)
        assert result == i + 1


async def _rpc_round(client: Any, count: int, into: list[float]) -> None:
    for _ in range(count):
        start = time.perf_counter()
        await client.scheduler.ncores()
        into.append(time.perf_counter() - start)


async def _payload_round(
    client: Any, payload: bytes, scatter: list[float], gather: list[float]
) -> None:
    start = time.perf_counter()
    [future] = await client.scatter([payload], direct=False, hash=False)
    scatter.append(time.perf_counter() - start)
    start = time.perf_counter()
    data = await client.gather(future, direct=False)
    gather.append(time.perf_counter() - start)
    assert len(data) == len(payload)
    await client.cancel(future)
    del future, data


async def _measure_cluster(
    addresses: dict[str, str],
    security: Any,
    tasks: int,
    sizes_mib: tuple[int, ...],
    rounds: int,
) -> dict[str, Any]:
    from distributed import Client

    clients = {
        path: await Client(addresses[path], security=security, asynchronous=True) for path in PATHS
    }
    try:
        for path, client in clients.items():
            await client.wait_for_workers(1)
            assert client.scheduler.address == addresses[path], (path, client.scheduler.address)
            await _task_round(client, WARMUP_TASKS, [])  # connections and worker warm
        task_times: dict[str, list[float]] = {p: [] for p in PATHS}
        rpc_times: dict[str, list[float]] = {p: [] for p in PATHS}
        scatter: dict[str, dict[int, list[float]]] = {p: {m: [] for m in sizes_mib} for p in PATHS}
        gather: dict[str, dict[int, list[float]]] = {p: {m: [] for m in sizes_mib} for p in PATHS}
        per_round = math.ceil(tasks / rounds)
        payloads = {mib: os.urandom(mib * 2**20) for mib in sizes_mib}
        for r in range(rounds):
            order = PATHS if r % 2 == 0 else PATHS[::-1]
            for path in order:
                await _task_round(clients[path], per_round, task_times[path])
                await _rpc_round(clients[path], per_round, rpc_times[path])
                for mib, payload in payloads.items():
                    await _payload_round(
                        clients[path], payload, scatter[path][mib], gather[path][mib]
                    )
        return {
            path: {
                "address": addresses[path],
                "task": _latency(task_times[path]),
                "rpc": _latency(rpc_times[path]),
                "scatter": {str(m): _spread(scatter[path][m], m) for m in sizes_mib},
                "gather": {str(m): _spread(gather[path][m], m) for m in sizes_mib},
            }
            for path in PATHS
        }
    finally:
        for client in clients.values():
            await client.close()


async def measure(
    address: str,
    token: str,
    proxy_address: str | None = None,
    *,
    tasks: int = TASKS,
    sizes_mib: tuple[int, ...] = SIZES_MIB,
    rounds: int = ROUNDS,
    cluster_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Direct connect against the proxy on one new hubgate cluster at ``address`` (the
    service's REST address), as the hub user whose ``token`` it is. ``proxy_address``:
    the scheduler proxy (default: the client's ``gateway.proxy-address``)."""
    from hubgate import Gateway, JupyterHubAuth

    if tasks < 1 or rounds < 1:
        raise ValueError("tasks and rounds must be at least 1")
    gateway = Gateway(
        address,
        proxy_address=proxy_address,
        auth=JupyterHubAuth(api_token=token),
        asynchronous=True,
        direct_connect="auto",
    )
    options = dict(CLUSTER_OPTIONS if cluster_options is None else cluster_options)
    async with gateway:
        cluster = await asyncio.wait_for(gateway.new_cluster(**options), TIMEOUT)
        try:
            await cluster.scale(1)
            auto_chose = cluster.scheduler_address
            proxied = f"{gateway.proxy_address}/{cluster.name}"
            record = await gateway._request("GET", f"api/hubgate/clusters/{cluster.name}")
            direct = record.get("direct_scheduler_address")
            if not direct:
                raise RuntimeError(f"the service gave no direct address: {record}")
            paths = await asyncio.wait_for(
                _measure_cluster(
                    {"direct": direct, "proxy": proxied},
                    cluster.security,
                    tasks,
                    tuple(sizes_mib),
                    rounds,
                ),
                TIMEOUT,
            )
        finally:
            await cluster.shutdown()
    return {
        "auto_chose": "direct" if auto_chose == direct else "proxy",
        "settings": {
            "tasks": tasks,
            "rounds": rounds,
            "sizes_mib": list(sizes_mib),
            "cluster_options": options,
            "workers": 1,
        },
        **paths,
    }


# -- on its own ----------------------------------------------------------------------------


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"auto chose: {result['auto_chose']}",
        f"{'':28}{'direct':>22}{'proxy':>22}",
    ]

    def row(label: str, value: Any) -> None:
        lines.append(f"{label:28}{value('direct'):>22}{value('proxy'):>22}")

    for kind in ("task", "rpc"):
        for stat in ("p50_ms", "p99_ms", "mean_ms"):
            row(f"{kind} round trip {stat}", lambda p, k=kind, s=stat: f"{result[p][k][s]:.2f}")
    for kind in ("scatter", "gather"):
        for mib in result["settings"]["sizes_mib"]:

            def rates(p: str, kind: str = kind, mib: int = mib) -> str:
                s = result[p][kind][str(mib)]
                return f"{s['min_mib_s']:.0f}/{s['median_mib_s']:.0f}/{s['max_mib_s']:.0f}"

            row(f"{kind} {mib} MiB (MiB/s min/med/max)", rates)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES_MIB))
    parser.add_argument("--output", type=Path, default=None, help="write the result as JSON")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).parent))
    from hubgate_side import make_hub

    work_dir = Path(tempfile.mkdtemp(prefix="hubgate-bench-direct-"))
    hub = make_hub(work_dir / "hub")
    load_before = os.getloadavg()
    try:
        print(f"starting JupyterHub + hubgate in {work_dir / 'hub'}", flush=True)
        hub.start(timeout=180)
        token = hub.make_user_tokens()["alice"]
        address = hub.settings.singleuser_environment()["DASK_GATEWAY__ADDRESS"]
        result = asyncio.run(
            measure(
                address,
                token,
                hub.settings.proxy_address,
                tasks=args.tasks,
                sizes_mib=tuple(args.sizes),
                rounds=args.rounds,
            )
        )
    finally:
        hub.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
    result["load_average"] = {"start": load_before, "end": os.getloadavg()}
    print(format_table(result))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
