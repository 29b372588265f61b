"""Limits on the demo hub (config/demo.py): per cluster 8 workers; per user 3 clusters,
12 cores, 24 GiB; the hub group 'staff' (admin) 10 clusters and 32 cores. End to end with
the real hub, the official dask-gateway client and hubgate's API."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.hub_api import HubgateAPI, checked, run_client, values, wait_until
from tests.fixtures.hub import gateway_env

pytestmark = pytest.mark.slow

EVERYTHING = "clusters?status=pending,running,stopping,stopped,failed"


@pytest.fixture
def bob(hub: RunningHub) -> Iterator[HubgateAPI]:
    api = HubgateAPI(hub, "bob")
    api.stop_all()
    yield api
    api.stop_all()


def test_per_cluster_limit_clamps_adapt_with_the_official_clients_warning(
    hub: RunningHub, bob: HubgateAPI, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        """
        import warnings
        from dask_gateway import Gateway, GatewayWarning
        cluster = Gateway().new_cluster()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                cluster.adapt(minimum=0, maximum=20)
            for w in caught:
                if issubclass(w.category, GatewayWarning):
                    print("WARNING", w.message)
        finally:
            cluster.shutdown()
        """
    )
    out = checked(run_client(hub, "bob", code, tmp_path))
    [warning] = values(out, "WARNING")
    assert warning.startswith(
        "Adapt with `maximum=20, minimum=0` workers would exceed resource limit of 8 "
        "workers. Using `maximum=8, minimum=0` instead."
    ), warning
    assert "this cluster's limit of 8 workers" in warning, warning


def test_user_limits_refuse_a_cluster_too_many_and_clamp_scale(
    hub: RunningHub, bob: HubgateAPI, tmp_path: Path
) -> None:
    names = [bob.create(worker_cores=2, worker_memory=4)["name"] for _ in range(3)]
    for name in names:
        bob.wait_running(name)
    before = len(bob.ok("GET", EVERYTHING)["clusters"])
    folders = set(hub.settings.cluster_work_dir.iterdir())

    status, body = bob.call("POST", "clusters", {"options": {}})
    assert status == 409, body
    assert "at most 3 cluster(s)" in body["error"] and "already have 3" in body["error"], body
    # the official client shows the same text
    code = textwrap.dedent(
        """
        from dask_gateway import Gateway
        try:
            Gateway().new_cluster()
        except Exception as exc:
            print("ERROR", type(exc).__name__, exc)
        """
    )
    [error] = values(checked(run_client(hub, "bob", code, tmp_path)), "ERROR")
    assert "at most 3 cluster(s)" in error, error
    # nothing half-created
    assert len(bob.ok("GET", EVERYTHING)["clusters"]) == before
    assert set(hub.settings.cluster_work_dir.iterdir()) == folders

    # 3 schedulers hold 3 of bob's 12 cores; 2-core workers: (12 - 3) // 2 = 4 fit.
    reply = bob.ok("POST", f"clusters/{names[0]}/scale", {"count": 6})
    bob.call("DELETE", f"clusters/{names[0]}")
    assert reply["ok"] is False
    assert reply["msg"].startswith(
        "Scale request of 6 workers would exceed resource limit of 4 workers. Scaling to 4 instead."
    ), reply
    assert "your limit of 12 cores across all your clusters" in reply["msg"], reply
    assert reply["cluster"]["workers"]["requested"] == 4


def test_group_limits_come_from_the_hub(hub: RunningHub) -> None:
    admin = HubgateAPI(hub, "admin")  # in the hub group 'staff'
    try:
        name = admin.create(worker_cores=4)["name"]
        admin.wait_running(name)
        reply = admin.ok("POST", f"clusters/{name}/adapt", {"minimum": 0, "maximum": 20})
        # staff: 32 cores; the scheduler holds 1; 4-core workers: 31 // 4 = 7 (< 8 per cluster)
        assert reply["ok"] is False
        assert "resource limit of 7 workers" in reply["msg"], reply
        assert "your limit of 32 cores" in reply["msg"], reply
        assert reply["cluster"]["adaptive"] == {"active": True, "minimum": 0, "maximum": 7}
    finally:
        admin.stop_all()


# Keeps each cluster's scheduler busy (its adaptive target far above 8 workers) until
# killed: thousands of half-second tasks per cluster.
BUSY = """
import sys, time
from dask_gateway import Gateway
gateway = Gateway()
clients = [gateway.connect(name).get_client(set_as_default=False) for name in sys.argv[1:]]
futures = [c.map(time.sleep, [0.5] * 2000, pure=False) for c in clients]
print("SUBMITTED", flush=True)
for c, fs in zip(clients, futures):
    c.gather(fs)
"""


def test_adaptive_clusters_stay_within_the_users_cores_together(
    hub: RunningHub, bob: HubgateAPI, tmp_path: Path
) -> None:
    """Bob's limit is 12 cores; three clusters hold 3 for their schedulers, so 9
    one-core workers fit, across all three. Each adapts up to 8, which fits when asked
    for; the scheduler's targets must not add up beyond the limit (they did: 24)."""
    names = [bob.create(worker_cores=1, worker_memory=1)["name"] for _ in range(3)]
    for name in names:
        bob.wait_running(name)
    for name in names:
        reply = bob.ok("POST", f"clusters/{name}/adapt", {"minimum": 0, "maximum": 8})
        assert reply["ok"] is True, reply
    busy = subprocess.Popen(
        [sys.executable, "-c", BUSY, *names],
        env=gateway_env(hub, "bob"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[int] = []

    def observe() -> int:
        records = [bob.cluster(name) for name in names]
        live = [r["workers"]["running"] + r["workers"]["pending"] for r in records]
        cores = 3 + sum(r["cores"] for r in records)
        assert cores <= 12, records
        assert all(n <= 8 for n in live), records
        seen.append(sum(live))
        return sum(live)

    try:
        # Up to the ceiling (the work wants far more), then it must hold there.
        wait_until(lambda: observe() == 9, "bob's clusters reaching 9 workers together", 180)
        for _ in range(30):
            observe()
            time.sleep(0.3)
        assert busy.poll() is None, busy.communicate()[0]
    finally:
        busy.kill()
        busy.communicate()
    assert max(seen) == 9, seen
    held = [e["message"] for name in names for e in bob.cluster(name)["events"]]
    assert any("your limit of 12 cores across all your clusters" in m for m in held), "\n".join(
        held
    )


def test_scale_to_a_hundred_million_is_refused_in_milliseconds(
    hub: RunningHub, bob: HubgateAPI, tmp_path: Path
) -> None:
    name = bob.create()["name"]
    bob.wait_running(name)
    expected = (
        "A scale request of 100000000 workers is more than this service allows for one "
        "cluster (1000, its max_workers_per_cluster); ask for at most 1000"
    )
    for path in (f"api/v1/clusters/{name}/scale", f"api/hubgate/clusters/{name}/scale"):
        request = urllib.request.Request(
            f"{hub.settings.gateway_address}/{path}",
            data=json.dumps({"count": 10**8}).encode(),
            method="POST",
            headers={"Authorization": f"token {hub.tokens['bob']}"},
        )
        start = time.perf_counter()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=60)
        elapsed = time.perf_counter() - start
        assert info.value.code == 422
        assert json.loads(info.value.read()) == {"error": expected}
        # The bound. Measured from outside, through the hub's proxy, on a loaded
        # machine: an upper bound on the service's own time (the token is cached since
        # bob's earlier requests, so no call to the hub is in it).
        assert elapsed < 0.1, elapsed
    for body in ({"maximum": 10**8}, {"minimum": 2000, "maximum": 3000}):
        status, reply = bob.call("POST", f"clusters/{name}/adapt", body)
        assert status == 422 and "max_workers_per_cluster" in reply["error"], reply

    # The official client shows the message; nothing was scheduled.
    code = textwrap.dedent(
        f"""
        from dask_gateway import Gateway
        try:
            Gateway().connect({name!r}).scale(10**8)
        except Exception as exc:
            print("ERROR", type(exc).__name__, exc)
        """
    )
    [error] = values(checked(run_client(hub, "bob", code, tmp_path)), "ERROR")
    assert error == f"ValueError {expected}", error
    record = bob.cluster(name)
    assert record["workers"] == {"requested": 0, "running": 0, "pending": 0}, record
    assert record["adaptive"]["active"] is False, record
