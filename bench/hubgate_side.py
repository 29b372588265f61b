"""hubgate as the benchmark runs it: a real JupyterHub with the hubgate service.

Started by :mod:`hubgate.tooling.hubrunner` exactly as ``hubgate demo`` and the tests start it
(configurable-http-proxy, the hub, the service as a managed service, the local
backend), with the demo's per-user limits lifted so one user may hold the 10 clusters
of the ``list_clusters`` measurement, and worker sizes as on the dask-gateway side.
"""

from __future__ import annotations

from pathlib import Path

from hubgate.tooling.hubrunner import HubSettings, RunningHub

# Same cluster shape as dask_gateway_side: 1 core, 1 thread, 1 GiB per worker.
BENCH_CONFIG = """
from hubgate.options import OptionSet, standard_handler, worker_cores_field, worker_memory_field
c.HubgateService.cluster_options = OptionSet(
    worker_cores_field(default=1, max=4),
    worker_memory_field(default=1, max=8),
    handler=standard_handler,
)
c.HubgateService.cluster_config = {}
c.HubgateService.user_limits = {}
c.HubgateService.group_limits = {}
"""


def make_hub(work_dir: Path) -> RunningHub:
    settings = HubSettings.with_free_ports(
        work_dir,
        hubgate_config_extra=BENCH_CONFIG,
        # a safety net: whatever the benchmark did not stop goes with the service
        stop_clusters_on_shutdown=True,
    )
    return RunningHub(settings)


def service_pids(hub: RunningHub) -> dict[str, int]:
    """The hubgate service process and its fork server (the service's own footprint;
    the hub and its proxy run for both sides and are not counted)."""
    import psutil

    assert hub.proc is not None
    pids: dict[str, int] = {}
    for proc in psutil.Process(hub.proc.pid).children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if "hubgate" in cmdline and "service" in cmdline:
            pids["hubgate service"] = proc.pid
            for child in proc.children(recursive=False):
                try:
                    if "hubgate.spawners.forkserver" in child.cmdline():
                        pids["hubgate fork server"] = child.pid
                except psutil.Error:
                    continue
    if "hubgate service" not in pids:
        raise RuntimeError("the hubgate service process was not found under the hub")
    return pids
