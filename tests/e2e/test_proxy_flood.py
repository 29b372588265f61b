"""Issue #10's acceptance test for the scheduler proxy: with 2,000 idle connections and
slow (slowloris) handshakes held open on the proxy port, the API still answers
``list_clusters`` and the seed flow (new cluster, scale, client, computation through the
proxy, shutdown) completes with the official dask-gateway client.

The hub is started as from a login shell or a systemd unit, with the usual soft limit of
1,024 file descriptors, which the service must raise itself (before the fix, the flood
used up its descriptors and new_cluster failed). The flood comes from 40 loopback
addresses (127.0.0.10 to 127.0.0.49): from a single address the per-address handshake
cap would refuse all but a few dozen, which tests the cap, not the service under load
(tests/proxy/ tests the caps). The user's own client connects from 127.0.0.1, as on the
demo host. Connections the proxy closes (handshake
timeout) are opened again at once, so the flood is held for the whole test.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dask_gateway import Gateway
from dask_gateway.auth import JupyterHubAuth

from hubgate.tooling.hubrunner import RunningHub
from tests.fixtures.hub import gateway_env, run_python, start_hub
from tests.proxy.hello import client_hello

from .proxy_flood import ProxyFlood, raise_open_files_limit

pytestmark = pytest.mark.slow

SOURCES = [f"127.0.0.{i}" for i in range(10, 50)]
IDLE_PER_SOURCE = 50  # 2,000 idle connections
SLOW_PER_SOURCE = 5  # 200 slow handshakes

SEED_FLOW = """
import time
from dask_gateway import Gateway
t0 = time.monotonic()
gateway = Gateway()
cluster = gateway.new_cluster()
try:
    cluster.scale(1)
    client = cluster.get_client()
    client.wait_for_workers(1, timeout=180)
    assert client.submit(lambda x: x + 1, 41).result() == 42
    assert sum(client.gather(client.map(lambda x: x * x, range(100)))) == 328350
    client.close()
finally:
    cluster.shutdown()
print(f"SEED FLOW OK {time.monotonic() - t0:.1f} s")
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    """A hub (and so its service) started with a soft descriptor limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))
    try:
        running = start_hub(tmp_path_factory.mktemp("flood-hub"))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    yield running
    running.stop()


def _list_clusters_latencies(gateway: Gateway, samples: int = 5) -> list[float]:
    latencies = []
    for _ in range(samples):
        start = time.perf_counter()
        gateway.list_clusters()
        latencies.append(time.perf_counter() - start)
        time.sleep(0.5)
    return latencies


def _ms(latencies: list[float]) -> str:
    return ", ".join(f"{t * 1000:.0f}" for t in latencies) + " ms"


def test_api_and_seed_flow_under_a_proxy_flood(
    hub: RunningHub, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    assert raise_open_files_limit() > 3 * len(SOURCES) * (IDLE_PER_SOURCE + SLOW_PER_SOURCE)
    auth = JupyterHubAuth(api_token=hub.tokens["alice"])
    with Gateway(hub.settings.gateway_address, auth=auth) as gateway:
        gateway.list_clusters()  # the hub's token cache is warm, as in normal use
        flood = ProxyFlood(
            hub.settings.scheduler_proxy_port,
            client_hello("daskgateway-flood"),
            sources=SOURCES,
            idle_per_source=IDLE_PER_SOURCE,
            slow_per_source=SLOW_PER_SOURCE,
        )
        with flood:
            flood.wait_established(timeout=120)
            first = _list_clusters_latencies(gateway)
            out = run_python(SEED_FLOW, gateway_env(hub, "alice"), tmp_path)
            still_open = sum(flood.established())
            # Past the first wave of handshake timeouts (and the flood opening them again).
            deadline = time.monotonic() + 120
            while flood.stats.closed_by_proxy < flood.wanted and time.monotonic() < deadline:
                time.sleep(0.5)
            after_wave = _list_clusters_latencies(gateway)
            stats = flood.stats
    assert flood.error is None, flood.error
    assert flood.open_sockets() == 0  # every flood socket closed

    latencies = first + after_wave
    summary = (
        f"list_clusters under the flood: {_ms(first)}, after a wave of handshake "
        f"timeouts: {_ms(after_wave)}; {out.strip().splitlines()[-1]}; flood: "
        f"{stats.opened} opened, {stats.closed_by_proxy} closed by the proxy, "
        f"{still_open} open after the seed flow"
    )
    print(summary)
    record_property("proxy_flood", summary)
    assert "SEED FLOW OK" in out
    # The proxy held the flood's connections and closed the silent ones at its handshake
    # timeout (the flood opened them again).
    assert stats.closed_by_proxy >= flood.wanted, summary
    # The flood was held while the seed flow ran (a proxy that let it go would test nothing).
    assert still_open >= flood.wanted // 2, summary
    # The issue measured 10.7 s before the fix; an unloaded answer takes tens of ms. The
    # median of the ten is bounded generously (2 s) so a busy 2-core CI machine cannot fail it.
    assert statistics.median(latencies) < 2.0, summary
