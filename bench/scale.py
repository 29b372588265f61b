"""Many clusters on one hubgate service: list latency, idle CPU, memory per cluster,
create rate and a restart, with the official ``dask_gateway`` client.

    .venv/bin/python bench/scale.py [--clusters 200] [--kube-clusters 1000]
                                    [--output bench/results/scale.json]

Two runs, one after the other:

- **local**: JupyterHub + hubgate as ``hubgate demo`` starts them (local backend, fork
  server), ``--clusters`` real dask schedulers with 0 workers;
- **kube**: the same hub with the Kubernetes backend against the stand-in API server of
  ``tests/fake_kube_apiserver`` started with ``--agent-only-pods``: its kubelet answers
  for each scheduler pod with the scheduler agent's protocol (hello, pings) and runs no
  process and no dask scheduler, so ``--kube-clusters`` of them fit on this machine. What
  is measured is the service's side; the run is named "agent-only pods" everywhere.

The service runs with the demo's configuration (as in bench/run.py) but the per-user
limits are lifted (no ``user_limits`` or ``group_limits``, ``max_clusters_per_user`` above
the number of clusters): one user holds them all. ``list_clusters`` is measured at the
service's own address (what single-user servers are given), for that user (a list of
all N clusters; no keys unless list_credentials is on) and for another user holding one
cluster among them, and through the hub's proxy. On the stand-in the clusters'
start timeout is 600 s (the stand-in itself is slow to start 1,000 pods). Everything
started is stopped on the way out (``try/finally``; Ctrl-C and SIGTERM too; leftover
processes in the run's folder are killed). ``measure()`` is the same thing for
``bench/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
from dask_gateway import Gateway, JupyterHubAuth
from dask_gateway.client import ClusterStatus

from hubgate.tooling.hubrunner import HubSettings, RunningHub, stop_process_group

# The hub polls its service every second (as in the tests), so the restart measures the
# service and not the hub's 30 s poll.
from tests.fixtures.hub import SERVICE_POLLED_EVERY_SECOND

USER = "alice"
OTHER_USER = "bob"
LIST_CALLS = 50
IDLE_SECONDS = 30.0  # the CPU of the idle service is measured over this long
SETTLE_SECONDS = 5.0  # after the last cluster is RUNNING, before measuring
CREATE_CONCURRENCY = 50  # creates in flight at once
STATUS_POLL = 0.1  # seconds between list_clusters while waiting for RUNNING
TIMEOUT = 600.0  # no step should take this long, even on a loaded machine
KUBE_NAMESPACE = "hubgate-scale"


def scale_config(clusters: int) -> str:
    """The demo's configuration (as bench/hubgate_side.py), with the per-user limits
    lifted so that one user may hold every cluster."""
    return f"""
c.HubgateService.user_limits = {{}}
c.HubgateService.group_limits = {{}}
c.HubgateService.max_clusters_per_user = {max(clusters + 10, 100)}
"""


def kube_config(kubeconfig: Path) -> str:
    return "\n".join(
        [
            'c.HubgateService.backend_class = "kubernetes"',
            f"c.HubgateService.python = {sys.executable!r}",
            f"c.KubernetesBackend.kubeconfig = {str(kubeconfig)!r}",
            f"c.KubernetesBackend.namespace = {KUBE_NAMESPACE!r}",
            'c.KubernetesBackend.image = "stand-in.local/hubgate-python:dev"',
            "c.KubernetesBackend.termination_grace_seconds = 5",
            # The stand-in API server is one Python process on a shared 2-core machine:
            # a burst of 1,000 creates takes it longer than the default 60 s.
            "c.HubgateService.cluster_start_timeout = 600",
            "",
        ]
    )


# -- processes ----------------------------------------------------------------------------


def service_process(hub: RunningHub) -> psutil.Process:
    """The hub's hubgate service (found by its config file), waiting through a restart."""
    config = str(hub.settings.work_dir / "hubgate_config.py")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info["cmdline"] or []
            if "service" in cmd and config in cmd:
                return proc
        time.sleep(0.05)
    raise RuntimeError("the hubgate service process was not found")


def memory_of(proc: psutil.Process) -> dict[str, float]:
    info = proc.memory_full_info()
    return {"rss_mib": info.rss / 2**20, "uss_mib": info.uss / 2**20, "pss_mib": info.pss / 2**20}


def processes_in(folder: Path) -> list[psutil.Process]:
    root = str(folder)
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            cwd = proc.cwd()
            if cwd == root or cwd.startswith(root + os.sep):
                found.append(proc)
    return found


def pss_mib(procs: list[psutil.Process]) -> float:
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total / 2**20


def kill_leftovers(work_dir: Path) -> list[int]:
    killed = []
    for proc in processes_in(work_dir):
        with contextlib.suppress(psutil.Error):
            proc.kill()
            killed.append(proc.pid)
    return killed


def process_age(pid: int) -> float:
    """Seconds since the process started, to the kernel's clock tick (psutil's
    create_time adds the boot time, which /proc gives in whole seconds)."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


def available_gib() -> float:
    return psutil.virtual_memory().available / 2**30


# -- the scenario -------------------------------------------------------------------------


async def _deadline(coro: Any, what: str, timeout: float = TIMEOUT) -> Any:
    try:
        return await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        raise RuntimeError(f"{what} took longer than {timeout:g} s") from None


async def running_count(gateway: Gateway) -> tuple[int, list[str]]:
    """The number of RUNNING clusters of this user, and the names of the FAILED ones."""
    reports = await gateway.list_clusters(status=["pending", "running", "failed"])
    running = sum(r.status is ClusterStatus.RUNNING for r in reports)
    return running, [r.name for r in reports if r.status is ClusterStatus.FAILED]


async def failure_reason(gateway: Gateway, name: str) -> str:
    """hubgate's own API says why a cluster failed (dask-gateway's report does not)."""
    resp = await gateway._request("GET", f"{gateway.address}/api/hubgate/clusters/{name}")
    return str((await resp.json()).get("reason"))


async def wait_all_running(gateway: Gateway, n: int) -> None:
    while True:
        running, failed = await running_count(gateway)
        if failed:
            why = await failure_reason(gateway, failed[0])
            raise RuntimeError(f"{len(failed)} cluster(s) failed while starting; one: {why}")
        if running >= n:
            return
        await asyncio.sleep(STATUS_POLL)


async def create_many(gateway: Gateway, n: int, names: list[str]) -> dict[str, Any]:
    """``n`` concurrent ``gateway.submit()`` (at most CREATE_CONCURRENCY in flight),
    then until every one is RUNNING. ``names`` gets each name as it is accepted (for
    the caller's clean-up, also when this fails)."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one() -> None:
        async with gate:
            names.append(await gateway.submit())

    start = time.perf_counter()
    await _deadline(asyncio.gather(*(one() for _ in range(n))), f"{n} creates")
    accepted = time.perf_counter() - start
    await _deadline(wait_all_running(gateway, n), f"{n} clusters reaching RUNNING")
    running = time.perf_counter() - start
    return {
        "accepted_s": accepted,
        "all_running_s": running,
        "accepted_per_s": n / accepted,
        "running_per_s": n / running,
    }


async def list_p50(gateway: Gateway, n: int) -> dict[str, float]:
    times = []
    for _ in range(LIST_CALLS):
        start = time.perf_counter()
        listed = await gateway.list_clusters()
        times.append(time.perf_counter() - start)
    if len(listed) != n:
        raise RuntimeError(f"list_clusters gave {len(listed)}, not {n}")
    times.sort()
    return {
        "p50_ms": 1000 * statistics.median(times),
        "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))],
    }


async def idle_cpu(proc: psutil.Process, seconds: float) -> float:
    """Percent of one core the process used over ``seconds`` (user + system)."""
    before = proc.cpu_times()
    start = time.monotonic()
    await asyncio.sleep(seconds)
    after = proc.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / (time.monotonic() - start)


async def restart(
    hub: RunningHub, gateway: Gateway, n: int, compute: Callable[[], Any] | None
) -> dict[str, Any]:
    """SIGTERM the service (clusters stay), the hub starts it again; time until
    list_clusters shows all ``n`` RUNNING and (``compute``) a cluster computes."""
    old = await asyncio.to_thread(service_process, hub)
    sent = time.time()
    old.send_signal(signal.SIGTERM)
    await asyncio.to_thread(old.wait, 60)

    def new_service() -> psutil.Process:
        while True:
            proc = service_process(hub)
            if proc.pid != old.pid:
                return proc
            time.sleep(0.05)

    new = await _deadline(asyncio.to_thread(new_service), "the hub starting the service again")
    started = time.time() - process_age(new.pid)

    async def all_running() -> None:
        while True:
            with contextlib.suppress(Exception):
                if (await running_count(gateway))[0] >= n:
                    return
            await asyncio.sleep(0.05)

    await _deadline(all_running(), "every cluster RUNNING after the restart")
    listed = time.time()
    result: dict[str, Any] = {
        "hub_noticed_s": started - sent,
        "listed_all_running_after_start_s": listed - started,
        "listed_all_running_after_sigterm_s": listed - sent,
    }
    if compute is not None:
        await _deadline(compute(), "a computation after the restart")
        done = time.time()
        result["computed_after_start_s"] = done - started
        result["computed_after_sigterm_s"] = done - sent
    return result


def _gateway(hub: RunningHub, token: str, address: str | None = None) -> Gateway:
    """The official client at ``address``; by default the service's own address, as
    single-user servers are given it."""
    return Gateway(
        address or hub.settings.singleuser_environment()["DASK_GATEWAY__ADDRESS"],
        proxy_address=hub.settings.proxy_address,
        auth=JupyterHubAuth(api_token=token),
        asynchronous=True,
    )


async def other_users_list(hub: RunningHub, token: str) -> dict[str, float]:
    """list_clusters of another user who holds one cluster among all of them: what
    most users of a shared service see."""
    async with _gateway(hub, token) as gateway:
        name = await gateway.submit()
        try:
            await _deadline(wait_all_running(gateway, 1), "another user's cluster")
            return await list_p50(gateway, 1)
        finally:
            await gateway.stop_cluster(name)


async def hub_proxy_list(hub: RunningHub, token: str, n: int) -> dict[str, float]:
    """The same list through the hub's proxy (the address outside the hub)."""
    async with _gateway(hub, token, hub.settings.gateway_address) as gateway:
        return await list_p50(gateway, n)


async def scenario(
    hub: RunningHub,
    tokens: dict[str, str],
    n: int,
    processes_dir: Path | None,
    compute_after_restart: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Everything measured on one running hub; stops every cluster it made."""
    gateway = _gateway(hub, tokens[USER])
    out: dict[str, Any] = {"clusters": n}
    names: list[str] = []
    try:
        # Warm-up: one cluster through its life, so that first-use allocations of the
        # service are in the baseline and not counted per cluster.
        warm = await gateway.submit()
        await _deadline(wait_all_running(gateway, 1), "the warm-up cluster")
        await gateway.stop_cluster(warm)
        await asyncio.sleep(SETTLE_SECONDS)
        proc = await asyncio.to_thread(service_process, hub)
        out["service_memory_0"] = memory_of(proc)
        out["idle_cpu_percent_0"] = await idle_cpu(proc, 10.0)
        out["available_gib_0"] = available_gib()
        log(f"  0 clusters: RSS {out['service_memory_0']['rss_mib']:.1f} MiB; creating {n}")

        created = await create_many(gateway, n, names)
        out["create"] = created
        log(
            f"  {n} accepted in {created['accepted_s']:.1f} s, all RUNNING after "
            f"{created['all_running_s']:.1f} s"
        )
        await asyncio.sleep(SETTLE_SECONDS)
        out["list_clusters"] = await list_p50(gateway, n)
        out["list_clusters_hub_proxy"] = await hub_proxy_list(hub, tokens[USER], n)
        out["list_clusters_other_user"] = await other_users_list(hub, tokens[OTHER_USER])
        await asyncio.sleep(SETTLE_SECONDS)
        log(
            f"  list_clusters p50 {out['list_clusters']['p50_ms']:.2f} ms (hub's proxy "
            f"{out['list_clusters_hub_proxy']['p50_ms']:.2f} ms; a user with 1 cluster "
            f"{out['list_clusters_other_user']['p50_ms']:.2f} ms); idle CPU ..."
        )
        out["idle_cpu_percent"] = await idle_cpu(proc, IDLE_SECONDS)
        out["idle_seconds"] = IDLE_SECONDS
        out["service_memory"] = memory_of(proc)
        for kind in ("rss", "uss"):
            grown = out["service_memory"][f"{kind}_mib"] - out["service_memory_0"][f"{kind}_mib"]
            out[f"{kind}_per_cluster_kib"] = 1024 * grown / n
        out["available_gib"] = available_gib()
        if processes_dir is not None:
            procs = await asyncio.to_thread(processes_in, processes_dir)
            out["cluster_processes"] = len(procs)
            out["cluster_processes_pss_mib"] = await asyncio.to_thread(pss_mib, procs)
        log(
            f"  idle CPU {out['idle_cpu_percent']:.2f} %, RSS "
            f"{out['service_memory']['rss_mib']:.1f} MiB, "
            f"{out['rss_per_cluster_kib']:.0f} KiB/cluster (RSS); restarting"
        )

        compute = None
        if compute_after_restart:
            # A computation needs a worker: one cluster gets one before the restart.
            busy = await gateway.connect(names[0])
            await busy.scale(1)
            client = busy.get_client(set_as_default=False)
            await _deadline(client.wait_for_workers(1), "a worker")
            await client.close()
            await busy.close(shutdown=False)

            async def compute() -> None:
                cluster = await gateway.connect(names[0])
                try:
                    client = cluster.get_client(set_as_default=False)
                    try:
                        assert await client.submit(sum, [1, 2, 3]) == 6
                    finally:
                        await client.close()
                finally:
                    await cluster.close(shutdown=False)

        out["restart"] = await restart(hub, gateway, n, compute)
        log(f"  restart: {json.dumps({k: round(v, 2) for k, v in out['restart'].items()})}")
        proc = await asyncio.to_thread(service_process, hub)
        out["service_memory_after_restart"] = memory_of(proc)
    finally:
        log(f"  stopping {len(names)} clusters")
        with contextlib.suppress(Exception):
            gate = asyncio.Semaphore(CREATE_CONCURRENCY)

            async def stop(name: str) -> None:
                async with gate:
                    with contextlib.suppress(Exception):
                        await gateway.stop_cluster(name)

            await _deadline(asyncio.gather(*(stop(name) for name in names)), "stopping", 300)
        await gateway.close()
    return out


# -- the two setups -----------------------------------------------------------------------


class StandInApiServerProcess:
    """``python -m tests.fake_kube_apiserver --agent-only-pods`` in its own session."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.kubeconfig = work_dir / "kubeconfig"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.work_dir / "stand-in.log", "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fake_kube_apiserver",
                "--kubeconfig",
                str(self.kubeconfig),
                "--agent-only-pods",
                "--history",
                "20000",
            ],
            # in the run's folder, so that kill_leftovers finds it after a hard stop
            cwd=self.work_dir,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.kubeconfig.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stand-in API server did not start; see {self.work_dir}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, 60)


def _hub(work_dir: Path, clusters: int, extra: str = "") -> RunningHub:
    settings = HubSettings.with_free_ports(
        work_dir,
        hubgate_config_extra=scale_config(clusters) + extra,
        jupyterhub_config_extra=SERVICE_POLLED_EVERY_SECOND,
    )
    return RunningHub(settings)


async def run_local(work_dir: Path, n: int, log: Callable[[str], None]) -> dict[str, Any]:
    hub = _hub(work_dir / "local-hub", n)
    try:
        log(f"local backend, {n} clusters: starting JupyterHub + hubgate in {work_dir}")
        await asyncio.to_thread(hub.start, 180)
        tokens = await asyncio.to_thread(hub.make_user_tokens)
        out = await scenario(hub, tokens, n, hub.settings.cluster_work_dir, True, log)
        out["setup"] = "local backend, fork server, real dask schedulers with 0 workers"
        return out
    finally:
        await asyncio.to_thread(hub.stop)


async def run_kube(work_dir: Path, n: int, log: Callable[[str], None]) -> dict[str, Any]:
    stand_in = StandInApiServerProcess(work_dir / "stand-in")
    hub: RunningHub | None = None
    try:
        log(f"Kubernetes stand-in, {n} clusters, agent-only pods: starting")
        await asyncio.to_thread(stand_in.start)
        hub = _hub(work_dir / "kube-hub", n, kube_config(stand_in.kubeconfig))
        await asyncio.to_thread(hub.start, 180)
        tokens = await asyncio.to_thread(hub.make_user_tokens)
        out = await scenario(hub, tokens, n, None, False, log)
        out["setup"] = (
            "Kubernetes backend against the stand-in API server, agent-only pods "
            "(no scheduler process; the stand-in's kubelet speaks the agent protocol)"
        )
        return out
    finally:
        if hub is not None:
            await asyncio.to_thread(hub.stop)
        await asyncio.to_thread(stand_in.stop)


async def measure(
    clusters: int = 200,
    kube_clusters: int = 1000,
    work_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Both runs (a count of 0 skips one); a dict of the figures. Cleans up after itself
    (but a caller that may be interrupted should also kill what runs in ``work_dir``)."""
    own = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="hubgate-scale-")) if work_dir is None else work_dir
    out: dict[str, Any] = {"machine": {"nproc": os.cpu_count(), "load": os.getloadavg()}}
    try:
        if clusters:
            out["local"] = await run_local(work, clusters, log)
        if kube_clusters:
            out["kube_agent_only"] = await run_kube(work, kube_clusters, log)
    finally:
        leftovers = kill_leftovers(work)
        if leftovers:
            log(f"killed {len(leftovers)} leftover process(es)")
        if own:
            shutil.rmtree(work, ignore_errors=True)
    out["load_at_end"] = os.getloadavg()
    return out


# -- reporting ----------------------------------------------------------------------------

TARGETS = [
    # (title, getter, unit, target, lower is better)
    (
        "list_clusters p50, one user holds all",
        lambda r: r["list_clusters"]["p50_ms"],
        "ms",
        3.0,
        True,
    ),
    (
        "the same via the hub's proxy",
        lambda r: r["list_clusters_hub_proxy"]["p50_ms"],
        "ms",
        None,
        True,
    ),
    (
        "list_clusters p50, a user with 1 of them",
        lambda r: r["list_clusters_other_user"]["p50_ms"],
        "ms",
        3.0,
        True,
    ),
    ("idle service CPU", lambda r: r["idle_cpu_percent"], "% core", 2.0, True),
    ("service RSS per cluster", lambda r: r["rss_per_cluster_kib"], "KiB", 100.0, True),
    ("service USS per cluster", lambda r: r["uss_per_cluster_kib"], "KiB", None, True),
    ("creates accepted per second", lambda r: r["create"]["accepted_per_s"], "/s", None, False),
    ("clusters RUNNING per second", lambda r: r["create"]["running_per_s"], "/s", 20.0, False),
    (
        "restart: all RUNNING listed, from new process",
        lambda r: r["restart"]["listed_all_running_after_start_s"],
        "s",
        5.0,
        True,
    ),
    (
        "restart: computed, from new process",
        lambda r: r["restart"]["computed_after_start_s"],
        "s",
        5.0,
        True,
    ),
    (
        "restart: all RUNNING listed, from SIGTERM",
        lambda r: r["restart"]["listed_all_running_after_sigterm_s"],
        "s",
        None,
        True,
    ),
    ("service RSS", lambda r: r["service_memory"]["rss_mib"], "MiB", None, True),
    ("scheduler processes, total PSS", lambda r: r["cluster_processes_pss_mib"], "MiB", None, True),
]


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """The header and one row per figure of ``TARGETS`` that some run has."""
    runs = [k for k in ("local", "kube_agent_only") if k in result]
    header = ["metric", *[f"{k} ({result[k]['clusters']})" for k in runs], "target"]
    rows = [header]
    for title, get, unit, target, lower in TARGETS:
        cells = []
        for k in runs:
            try:
                value = get(result[k])
            except KeyError:
                cells.append("-")
                continue
            ok = "" if target is None else (" ok" if (value <= target) == lower else " NO")
            cells.append(f"{value:.2f}{ok}")
        if all(c == "-" for c in cells):
            continue
        aim = "-" if target is None else f"{'<=' if lower else '>='} {target:g}"
        rows.append([f"{title} ({unit})", *cells, aim])
    return rows


def format_table(result: dict[str, Any]) -> str:
    rows = table_rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            " | ".join(
                [row[0].ljust(widths[0])]
                + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            )
        )
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=200, help="local backend (0: skip)")
    parser.add_argument(
        "--kube-clusters", type=int, default=1000, help="Kubernetes stand-in (0: skip)"
    )
    parser.add_argument(
        "--output",
        default=str(Path(__file__).resolve().parent / "results" / "scale.json"),
        help="where to write the JSON results",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    work = Path(tempfile.mkdtemp(prefix="hubgate-scale-"))
    started = time.time()

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    try:
        result = asyncio.run(measure(args.clusters, args.kube_clusters, work, log))
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        kill_leftovers(work)
        shutil.rmtree(work, ignore_errors=True)
    result["started"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))
    result["duration_s"] = round(time.time() - started, 1)
    result["command"] = " ".join([".venv/bin/python", "bench/scale.py", *sys.argv[1:]])
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(format_table(result))
    print(f"\nraw figures in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
