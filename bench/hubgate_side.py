"""hubgate as the benchmark runs it: a real JupyterHub with the hubgate service.

Started by :mod:`hubgate.tooling.hubrunner` exactly as ``hubgate demo`` and the tests start it
(configurable-http-proxy, the hub, the service as a managed service, the local backend)
with the demo's configuration (``hubgate.config.demo.configure_demo``: uid-range
accounts, the demo's options form, ``cluster_config``, limits). One thing differs: the
per-user limits are lifted so that one user may hold the 10+ clusters of the
``list_clusters`` measurement. The demo's default worker (its options form) is already
what the dask-gateway side runs: 1 core, 1 thread, 1 GiB.
"""

from __future__ import annotations

from pathlib import Path

from hubgate.tooling.hubrunner import HubSettings, RunningHub

# The demo's per-user limits (3 clusters, 12 cores, 24G across a user's clusters) are
# lifted: one user holds 10+ clusters here. Per-cluster limits (max_workers 8) stay.
BENCH_CONFIG = """
c.HubgateService.user_limits = {}
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
