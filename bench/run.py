"""hubgate against dask-gateway-server 2026.3.0, side by side in one run.

    .venv/bin/python bench/run.py [--repeats N] [--output bench/results/latest.json]

Starts a real JupyterHub with the hubgate service (local backend) and a
dask-gateway-server (UnsafeLocalBackend, JupyterHubAuthenticator against the same hub,
SQLite with an encryption key, its Go proxy), drives both with the official
``dask_gateway`` client and the same hub token, in interleaved rounds (the first one a
discarded warm-up), prints the medians with their ratios and targets, and writes every
raw sample, the versions and the machine to JSON. Everything it started is stopped on
the way out, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_latency import ApiAddress, ApiSettings, api_round
from dask_gateway_side import DaskGatewaySettings, RunningDaskGateway
from hubgate_side import make_hub, service_pids
from scenarios import ProxySettings, Samples, Side, one_round, wire_round

HUBGATE = "hubgate"
DASK_GATEWAY = "dask-gateway"
USER = "alice"


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    lower_is_better: bool
    target: float | None  # hubgate / dask-gateway ratio to meet; None: shown only
    # dask-gateway's sample key to compare with, when it is not ``key`` (an address of
    # hubgate's that dask-gateway has no counterpart of)
    theirs_key: str | None = None
    # the target holds for hubgate's own value, not for the ratio (e.g. its proxy's
    # rate over its direct rate)
    own_target: bool = False


def wire_metrics(sizes_mib: tuple[int, ...] = (1, 4, 16, 64, 256)) -> list[Metric]:
    """Task and RPC round trips and scatter/gather per payload size (scenarios.wire_round)."""
    rows = [
        Metric("task_p50_ms", "task round trip p50 via proxy, 1 worker", "ms", True, 1.0),
        Metric("task_p99_ms", "task round trip p99 via proxy, 1 worker", "ms", True, 1.0),
        Metric("direct_task_p50_ms", "task round trip p50, direct TLS", "ms", True, None),
        Metric("direct_task_p99_ms", "task round trip p99, direct TLS", "ms", True, None),
        Metric("ping_p50_ms", "scheduler RPC p50 via proxy", "ms", True, None),
        Metric("direct_ping_p50_ms", "scheduler RPC p50, direct TLS", "ms", True, None),
    ]
    for mib in sizes_mib:
        for what in ("scatter", "gather"):
            rows += [
                Metric(
                    f"{what}_{mib}mib_mib_s", f"{what} {mib} MiB via proxy", "MiB/s", False, 1.0
                ),
                Metric(
                    f"direct_{what}_{mib}mib_mib_s",
                    f"{what} {mib} MiB, direct TLS",
                    "MiB/s",
                    False,
                    None,
                ),
                Metric(
                    f"{what}_{mib}mib_vs_direct",
                    f"{what} {mib} MiB, proxy / direct (each side its own)",
                    "x",
                    False,
                    0.9,
                    own_target=True,
                ),
            ]
    rows += [
        *(
            Metric(
                f"{what}_vs_direct",
                f"{what}, all sizes, proxy / direct (MiB over seconds)",
                "x",
                False,
                0.9,
                own_target=True,
            )
            for what in ("scatter", "gather")
        ),
        Metric("cpu_busy_direct", "cores busy during direct transfers (share)", "x", True, None),
        Metric("cpu_busy_proxied", "cores busy during proxied transfers (share)", "x", True, None),
        Metric("cpu_ms_per_mib_direct", "machine's CPU per MiB, direct TLS", "ms", True, None),
        Metric("cpu_ms_per_mib_proxied", "machine's CPU per MiB, via proxy", "ms", True, None),
        Metric("proxy_cpu_ms_per_mib", "proxy process's CPU per MiB relayed", "ms", True, None),
    ]
    return rows


METRICS = [
    Metric("create_s", "create -> RUNNING (new_cluster)", "s", True, 0.3),
    Metric("scale_0_to_4_s", "scale 0 -> 4 workers connected", "s", True, 0.5),
    Metric("stop_0_workers_s", "shutdown -> STOPPED, 0 workers", "s", True, 0.1),
    Metric("stop_4_workers_s", "shutdown -> STOPPED, 4 workers", "s", True, 0.1),
    Metric("list_p50_ms_1c", "list_clusters p50, 1 cluster", "ms", True, 0.5),
    Metric("list_p99_ms_1c", "list_clusters p99, 1 cluster", "ms", True, 1.0),
    Metric("list_p50_ms_10c", "list_clusters p50, 10 clusters", "ms", True, 0.5),
    Metric("list_p99_ms_10c", "list_clusters p99, 10 clusters", "ms", True, 1.0),
    Metric("list_rps_1c", "list_clusters/s, 16 in flight, 1 cluster", "1/s", False, 1.5),
    Metric("list_rps_10c", "list_clusters/s, 16 in flight, 10 clusters", "1/s", False, 1.5),
    Metric(
        "list_p50_ms_1c_hub_proxy",
        "list_clusters p50, 1 cluster, hubgate via the hub's proxy",
        "ms",
        True,
        None,
        theirs_key="list_p50_ms_1c",
    ),
    Metric(
        "list_p99_ms_1c_hub_proxy",
        "list_clusters p99, 1 cluster, hubgate via the hub's proxy",
        "ms",
        True,
        None,
        theirs_key="list_p99_ms_1c",
    ),
    Metric(
        "list_rps_1c_hub_proxy",
        "list_clusters/s, 1 cluster, hubgate via the hub's proxy",
        "1/s",
        False,
        None,
        theirs_key="list_rps_1c",
    ),
    *wire_metrics(),
    Metric("memory_mib", "service RSS, 10 clusters", "MiB", True, 1.0),
    Metric("memory_with_helpers_mib", "service + helper processes RSS", "MiB", True, None),
    Metric("clusters_pss_mib", "10 idle schedulers, total PSS", "MiB", True, None),
]


# -- running -----------------------------------------------------------------------------


async def measure(
    sides: list[Side],
    repeats: int,
    proxy: ProxySettings,
    api_addresses: dict[str, list[ApiAddress]],
    api: ApiSettings,
    only: str = "all",
) -> dict[str, Any]:
    """Round 0 is the warm-up; the order of the sides alternates every round so that
    background load and caches hit both alike."""
    warmup: dict[str, Samples] = {side.label: {} for side in sides}
    samples: dict[str, Samples] = {side.label: {} for side in sides}
    for round_no in range(repeats + 1):
        order = sides if round_no % 2 == 0 else list(reversed(sides))
        for side in order:
            target = warmup if round_no == 0 else samples
            what = "warm-up" if round_no == 0 else f"round {round_no}/{repeats}"
            print(f"[{time.strftime('%H:%M:%S')}] {what}: {side.label}", flush=True)
            if only == "wire":
                await wire_round(side, target[side.label], proxy)
                continue
            if only == "all":
                await one_round(side, target[side.label], proxy)
            await api_round(
                api_addresses[side.label], side.proxy_address, side.token, api, target[side.label]
            )
    return {"samples": samples, "warmup": warmup}


def machine_info() -> dict[str, Any]:
    import psutil

    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    names = [
        "hubgate",
        "dask-gateway",
        "dask-gateway-server",
        "dask",
        "distributed",
        "jupyterhub",
        "tornado",
        "aiohttp",
        "sqlalchemy",
    ]
    return {name: version(name) for name in names}


def kill_leftovers(work_dir: Path) -> list[int]:
    """Cluster processes that outlived their gateway: anything running in our folder."""
    import psutil

    killed = []
    root = str(work_dir)
    for proc in psutil.process_iter(["pid"]):
        try:
            cwd = proc.cwd()
        except psutil.Error:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            try:
                proc.kill()
                killed.append(proc.pid)
            except psutil.Error:
                pass
    return killed


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    work_dir = Path(tempfile.mkdtemp(prefix="hubgate-bench-"))
    hub = make_hub(work_dir / "hub")
    gateway: RunningDaskGateway | None = None
    # Our own handler for both: asyncio's SIGINT handler only cancels the main task, and
    # library code on the way (client clean-up) may swallow that cancellation.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.time()
    load_before = os.getloadavg()
    try:
        print(f"starting JupyterHub + hubgate in {work_dir / 'hub'}", flush=True)
        hub.start(timeout=180)
        token = hub.make_user_tokens()[USER]
        gateway = RunningDaskGateway(
            DaskGatewaySettings(
                work_dir / "dask-gateway",
                hub_api_url=f"{hub.settings.hub_url}/hub/api",
                no_nanny=args.dask_gateway_no_nanny,
            )
        )
        print(f"starting dask-gateway-server in {gateway.settings.work_dir}", flush=True)
        gateway.start()
        # what a single-user server is given: the service's own address
        hubgate_address = hub.settings.singleuser_environment()["DASK_GATEWAY__ADDRESS"]
        sides = [
            Side(
                HUBGATE,
                hubgate_address,
                hub.settings.proxy_address,
                token,
                lambda: service_pids(hub),
                ("hubgate service",),
                hub.settings.cluster_work_dir,
                "hubgate service",  # its relay threads
            ),
            Side(
                DASK_GATEWAY,
                gateway.settings.address,
                gateway.settings.proxy_address,
                token,
                gateway.service_pids,
                ("dask-gateway-server", "dask-gateway-proxy"),
                gateway.settings.clusters_directory,
                "dask-gateway-proxy",
            ),
        ]
        proxy = ProxySettings(pings=args.pings, tasks=args.tasks, repeats=args.transfers)
        api_addresses = {
            HUBGATE: [
                ApiAddress("", hubgate_address),
                ApiAddress("hub_proxy", hub.settings.gateway_address),
            ],
            DASK_GATEWAY: [ApiAddress("", gateway.settings.address)],
        }
        api = ApiSettings(calls=args.api_calls, load_seconds=args.load_seconds)
        measured = asyncio.run(measure(sides, args.repeats, proxy, api_addresses, api, args.only))
    finally:
        print("stopping everything", flush=True)
        if gateway is not None:
            gateway.stop()
        hub.stop()
        leftovers = kill_leftovers(work_dir)
        if leftovers:
            print(f"killed {len(leftovers)} leftover process(es): {leftovers}", file=sys.stderr)
        if args.keep:
            print(f"logs kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "command": " ".join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
        "repeats": args.repeats,
        "machine": {**machine_info(), "load_average_at_start": load_before},
        "load_average_at_end": os.getloadavg(),
        "versions": versions(),
        "setup": {
            "hubgate": "JupyterHub + configurable-http-proxy + hubgate service (local "
            "backend, fork server), client at the service's own address as single-user "
            "servers are given it (API rows marked 'via the hub's proxy': the hub's public "
            "/services/dask-gateway, as outside the hub), hub token",
            "dask-gateway": "dask-gateway-server (UnsafeLocalBackend, "
            "JupyterHubAuthenticator against the same hub, SQLite + encryption key), "
            "client through its Go proxy, same hub token; scheduler/worker commands "
            "python -m distributed.cli.dask_scheduler / dask_worker (issue #945)",
            "workers": "1 core, 1 thread, 1 GiB each; 4 workers for scale and proxy",
            "dask_gateway_worker_nanny": not args.dask_gateway_no_nanny,
            "proxy": vars(proxy),
        },
        **measured,
        "medians": medians(measured["samples"]),
    }


# -- reporting ---------------------------------------------------------------------------


def medians(samples: dict[str, Samples]) -> dict[str, dict[str, float]]:
    return {
        label: {key: statistics.median(values) for key, values in per_side.items() if values}
        for label, per_side in samples.items()
    }


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per metric: each side's median with the spread of its samples
    ``[min-max]``, the ratio of the medians, the target and whether it is met (for an
    ``own_target`` metric, by hubgate's own median)."""
    med, samples = result["medians"], result["samples"]
    rows = []
    for m in METRICS:
        theirs_key = m.theirs_key or m.key
        ours, theirs = med[HUBGATE].get(m.key), med[DASK_GATEWAY].get(theirs_key)
        if ours is None or theirs is None:
            continue
        ratio = ours / theirs if theirs else float("inf")
        judged = ours if m.own_target else ratio
        if m.target is None:
            target, met = "-", "-"
        elif m.lower_is_better:
            target, met = f"<= {m.target:g}x", "yes" if judged <= m.target else "NO"
        else:
            target, met = f">= {m.target:g}x", "yes" if judged >= m.target else "NO"
        digits = 3 if m.unit in ("s", "ms") else 2 if m.unit == "x" else 0

        def cell(value: float, values: list[float], digits: int = digits) -> str:
            if len(values) < 2:
                return f"{value:.{digits}f}"
            return f"{value:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"

        rows.append(
            [
                f"{m.title} ({m.unit})",
                cell(ours, samples[HUBGATE][m.key]),
                cell(theirs, samples[DASK_GATEWAY][theirs_key]),
                f"{ratio:.3f}",
                target,
                met,
            ]
        )
    return rows


HEADER = ["metric", HUBGATE, DASK_GATEWAY, "ratio", "target", "met?"]


def format_table(result: dict[str, Any]) -> str:
    rows = [HEADER, *table_rows(result)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append(" | ".join(cells))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(result: dict[str, Any]) -> str:
    rows = [HEADER, ["---", *["---:"] * 5], *table_rows(result)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="measured rounds per side")
    parser.add_argument(
        "--output",
        default=str(Path(__file__).resolve().parent / "results" / "latest.json"),
        help="where to write the JSON results",
    )
    parser.add_argument("--pings", type=int, default=200, help="scheduler RPCs per round")
    parser.add_argument("--tasks", type=int, default=500, help="tasks per round and path")
    parser.add_argument(
        "--transfers", type=int, default=3, help="scatters and gathers per size, path and round"
    )
    parser.add_argument(
        "--api-calls",
        type=int,
        default=ApiSettings.calls,
        help="sequential list_clusters calls per p50/p99 sample",
    )
    parser.add_argument(
        "--load-seconds",
        type=float,
        default=ApiSettings.load_seconds,
        help="seconds of concurrent list_clusters calls per requests-per-second sample",
    )
    parser.add_argument(
        "--only",
        choices=["all", "api", "wire"],
        default="all",
        help="api: only the list_clusters latency and throughput rounds; wire: only the "
        "task round trips and scatter/gather, through the proxy and direct",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs folder")
    parser.add_argument(
        "--dask-gateway-no-nanny",
        action="store_true",
        help="run dask-gateway's workers without a nanny, like hubgate's (default: its "
        "stock worker, under a nanny)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    # distributed logs a harmless traceback when a client closes its batched stream.
    logging.getLogger("distributed.batched").setLevel(logging.WARNING)
    try:
        result = run(args)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(format_table(result))
    print(f"\nmedians of {args.repeats} rounds; raw samples in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
