"""Running a shared hub, end to end against a real JupyterHub, real schedulers and
workers: idle culling, orphaned clusters, dead schedulers and workers, adaptive scaling,
the version check and admins."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.hub_api import (
    HubgateAPI,
    checked,
    leftovers,
    processes_of,
    run_client,
    values,
    wait_until,
)

pytestmark = pytest.mark.slow


def _stopped(record: dict) -> bool:
    return record["status"] in ("STOPPED", "FAILED")


# --- idle culling ------------------------------------------------------------------------


def test_idle_cluster_is_culled_and_says_so(alice: HubgateAPI, ops_hub: RunningHub) -> None:
    name = alice.create(idle_timeout=3)["name"]
    alice.wait_running(name)
    record = alice.wait_for(name, _stopped, "idle culling", timeout=90)
    assert record["status"] == "STOPPED"
    assert record["reason"].startswith("stopped after 3 s idle"), record["reason"]
    assert any("stopped after 3 s idle" in e["message"] for e in record["events"])
    wait_until(lambda: not processes_of(name), "the cluster's processes to end")
    assert leftovers(ops_hub, name) == []


def test_computing_cluster_is_not_culled(
    alice: HubgateAPI, ops_hub: RunningHub, tmp_path: Path
) -> None:
    # A task of 12 s on a cluster with a 4 s idle timeout: the cluster must survive it,
    # and be culled once it is idle again.
    code = textwrap.dedent(
        """
        import time
        from hubgate import Gateway
        gateway = Gateway()
        cluster = gateway.new_cluster(idle_timeout=4, shutdown_on_close=False)
        print("NAME", cluster.name, flush=True)
        cluster.scale(1)
        client = cluster.get_client()
        future = client.submit(time.sleep, 12, pure=False)
        client.wait_for_workers(1, timeout=120)
        future.result(timeout=180)
        status = gateway.get_cluster(cluster.name).status.name
        print("AFTER", status)
        client.close()
        """
    )
    out = checked(run_client(ops_hub, "alice", code, tmp_path))
    [name] = values(out, "NAME")
    assert values(out, "AFTER") == ["RUNNING"], out
    record = alice.wait_for(name, _stopped, "idle culling after the work", timeout=90)
    assert record["reason"].startswith("stopped after 4 s idle"), record


# --- orphans -----------------------------------------------------------------------------


async def test_cluster_of_a_killed_kernel_is_stopped_when_its_lease_runs_out(
    kernel_in_server, hub: RunningHub
) -> None:
    kernel = await kernel_in_server("alice")
    # hubgate's client renews a 60 s lease every 20 s; shorter here (through its dask
    # config keys) to keep the test short.
    out = await kernel.execute(
        """
        import os
        import dask
        dask.config.set({"gateway.lease.seconds": 6, "gateway.lease.renew-every": 1})
        from hubgate import Gateway
        cluster = Gateway().new_cluster(shutdown_on_close=True)
        cluster.scale(1)
        client = cluster.get_client()
        client.wait_for_workers(1, timeout=120)
        print("NAME", cluster.name)
        print("PID", os.getpid())
        """
    )
    [name] = values(out, "NAME")
    [pid] = values(out, "PID")
    api = HubgateAPI(hub, "alice")
    record = api.cluster(name)
    assert record["status"] == "RUNNING" and record["lease_expires"], record
    assert processes_of(name)
    os.kill(int(pid), signal.SIGKILL)
    record = api.wait_for(name, _stopped, "the orphan's stop", timeout=120)
    assert record["status"] == "STOPPED"
    assert "client that created it went away" in record["reason"], record
    wait_until(lambda: not processes_of(name), "the orphan's processes to end")
    assert leftovers(hub, name) == []


# --- dead parts --------------------------------------------------------------------------

START_AND_REPORT_PIDS = """
import os
from hubgate import Gateway
cluster = Gateway().new_cluster(shutdown_on_close=False)
cluster.scale(2)
client = cluster.get_client()
client.wait_for_workers(2, timeout=120)
print("NAME", cluster.name)
print("SCHEDULER", client.run_on_scheduler(os.getpid))
for address, pid in client.run(os.getpid).items():
    print("WORKER", pid)
client.close()
cluster.close()
"""


def test_killed_scheduler_fails_the_cluster_with_its_reason(
    alice: HubgateAPI, ops_hub: RunningHub, tmp_path: Path
) -> None:
    out = checked(run_client(ops_hub, "alice", START_AND_REPORT_PIDS, tmp_path))
    [name] = values(out, "NAME")
    [scheduler] = values(out, "SCHEDULER")
    os.kill(int(scheduler), signal.SIGKILL)
    record = alice.wait_for(name, _stopped, "the FAILED status", timeout=60)
    assert record["status"] == "FAILED", record
    reason = record["reason"]
    assert reason.startswith("The scheduler died: it was killed by signal 9 (SIGKILL)"), reason
    assert "Its last log lines:" in reason, reason
    wait_until(lambda: not processes_of(name), "the workers to be stopped too")
    logs = alice.ok("GET", f"clusters/{name}/logs")
    assert logs["scheduler"], logs


def test_killed_worker_is_replaced(alice: HubgateAPI, ops_hub: RunningHub, tmp_path: Path) -> None:
    out = checked(run_client(ops_hub, "alice", START_AND_REPORT_PIDS, tmp_path))
    [name] = values(out, "NAME")
    victim = int(values(out, "WORKER")[0])
    before = {e["message"] for e in alice.cluster(name)["events"]}
    os.kill(victim, signal.SIGKILL)
    alice.wait_for(
        name,
        lambda r: (
            any("replacing it" in e["message"] for e in r["events"])
            and r["workers"]["running"] == 2
        ),
        "a replacement worker",
        timeout=60,
    )
    record = alice.cluster(name)
    assert record["status"] == "RUNNING"
    new_events = [e["message"] for e in record["events"] if e["message"] not in before]
    assert any("replacing it" in m for m in new_events), new_events


# --- adaptive ----------------------------------------------------------------------------


def test_adaptive_scales_up_under_load_and_down_when_idle(
    alice: HubgateAPI, ops_hub: RunningHub, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        """
        import time, json, urllib.request
        from hubgate import Gateway
        gateway = Gateway()
        cluster = gateway.new_cluster(shutdown_on_close=False)
        print("NAME", cluster.name, flush=True)
        cluster.adapt(minimum=1, maximum=3)
        client = cluster.get_client()
        # 45 s of work for the first worker's one thread: adapt wants 3 workers for
        # longer than two more take to start on a loaded machine
        futures = client.map(time.sleep, [1.0] * 45, pure=False)
        deadline = time.time() + 180
        while len(client.scheduler_info()["workers"]) < 3 and time.time() < deadline:
            time.sleep(0.5)
        print("PEAK", len(client.scheduler_info()["workers"]), flush=True)
        client.gather(futures)
        client.close()
        """
    )
    out = checked(run_client(ops_hub, "alice", code, tmp_path))
    [name] = values(out, "NAME")
    assert values(out, "PEAK") == ["3"], out
    record = alice.cluster(name)
    assert record["adaptive"] == {"active": True, "minimum": 1, "maximum": 3}, record
    # idle now: back to the minimum
    record = alice.wait_for(
        name,
        lambda r: r["workers"]["requested"] == 1 and r["workers"]["running"] == 1,
        "scale-down to the minimum",
    )
    # adapt(active=False) stops it; a manual scale turns it off as well
    reply = alice.ok("POST", f"clusters/{name}/adapt", {"minimum": 2, "maximum": 3})
    assert reply["cluster"]["adaptive"]["active"] is True
    assert reply["cluster"]["workers"]["requested"] == 2
    reply = alice.ok("POST", f"clusters/{name}/adapt", {"active": False})
    assert reply["cluster"]["adaptive"]["active"] is False
    alice.ok("POST", f"clusters/{name}/adapt", {"minimum": 1, "maximum": 3})
    reply = alice.ok("POST", f"clusters/{name}/scale", {"count": 2})
    assert reply["ok"] is True
    assert reply["cluster"]["adaptive"]["active"] is False
    assert reply["cluster"]["workers"]["requested"] == 2


# --- versions ----------------------------------------------------------------------------


def test_version_mismatch_warns_with_one_table(
    alice: HubgateAPI, ops_hub: RunningHub, tmp_path: Path
) -> None:
    # The client sees an old msgpack (a shadowing distribution record on its path) while
    # the real package still works: the cluster's msgpack differs from the client's.
    fake = tmp_path / "shadow" / "msgpack-0.9.9.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: msgpack\nVersion: 0.9.9\n")
    code = textwrap.dedent(
        """
        import warnings
        from hubgate import Gateway, GatewayWarning
        cluster = Gateway().new_cluster()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                client = cluster.get_client()
            ours = [w for w in caught if issubclass(w.category, GatewayWarning)]
            print("COUNT", len(ours))
            for w in ours:
                print(str(w.message))
            client.close()
        finally:
            cluster.shutdown()
        """
    )
    out = checked(
        run_client(ops_hub, "alice", code, tmp_path, {"PYTHONPATH": str(tmp_path / "shadow")})
    )
    assert values(out, "COUNT") == ["1"], out
    row = next(line for line in out.splitlines() if line.startswith("! msgpack"))
    assert "0.9.9" in row, out
    assert "pip install msgpack==" in out, out
    assert "! dask " not in out and "! distributed" not in out, out


# --- admin -------------------------------------------------------------------------------


def test_admin_sees_scales_and_stops_everyones_clusters(
    ops_hub: RunningHub, alice: HubgateAPI, tmp_path: Path
) -> None:
    bob = HubgateAPI(ops_hub, "bob")
    try:
        alices = alice.create()["name"]
        bobs = bob.create()["name"]
        alice.wait_running(alices)
        bob.wait_running(bobs)

        # alice cannot see bob's
        assert alice.call("GET", f"clusters/{bobs}")[0] == 403
        assert alice.call("GET", "clusters?all_users=1")[0] == 403
        assert [c["name"] for c in alice.ok("GET", "clusters")["clusters"]] == [alices]
        assert alice.call("POST", f"clusters/{bobs}/scale", {"count": 1})[0] == 403

        code = textwrap.dedent(
            f"""
            from hubgate import Gateway
            gateway = Gateway()
            everyone = {{c.name for c in gateway.list_clusters(all_users=True)}}
            print("SEES", sorted(everyone & {{{alices!r}, {bobs!r}}}))
            gateway.scale_cluster({alices!r}, 1)
            gateway.stop_cluster({bobs!r})
            """
        )
        out = checked(run_client(ops_hub, "admin", code, tmp_path))
        assert values(out, "SEES") == [str(sorted([alices, bobs]))], out
        alice.wait_for(alices, lambda r: r["workers"]["running"] == 1, "admin's scale")
        record = bob.wait_for(bobs, _stopped, "admin's stop")
        assert record["status"] == "STOPPED" and record["reason"] == "stopped by admin"
    finally:
        bob.stop_all()
