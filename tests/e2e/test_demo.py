"""The product's first command, ``hubgate demo`` (what ``scripts/demo.sh`` runs after its
set-up): it prints where everything is, a laptop with a printed token gets a cluster
from it with the official client, each user's clusters run under a uid of their own,
and Ctrl-C stops the hub, the service and every cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hubgate.tooling.hubrunner import free_port
from tests.e2e.hub_api import checked, values

pytestmark = pytest.mark.slow

LAPTOP = """
import os
from dask_gateway import Gateway

gateway = Gateway({address!r}, auth="jupyterhub", proxy_address={proxy!r})
# left running: stopping the demo must stop it
cluster = gateway.new_cluster(shutdown_on_close=False)
cluster.scale(1)
client = cluster.get_client()
client.wait_for_workers(1, timeout=120)
print("SUM", client.submit(sum, range(10)).result())
print("UID", client.run_on_scheduler(os.getuid))
print("PID", client.run_on_scheduler(os.getpid))
for pid in client.run(os.getpid).values():
    print("PID", pid)
client.close()
cluster.close()
gateway.close()
"""


def _processes() -> dict[int, tuple[int, str]]:
    """Live processes: pid -> (parent pid, command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found[int(entry)] = (int(fields[1]), cmdline.decode(errors="replace"))
    return found


def _demo_processes(work_dir: Path, hub_port: int) -> set[int]:
    """The hub and the service (their command lines name the demo's folder), the hub's
    proxy (its port) and the service's fork server (its child)."""
    processes = _processes()
    ours = {
        pid
        for pid, (_, cmd) in processes.items()
        if str(work_dir) in cmd or f"--port {hub_port} " in cmd
    }
    return ours | {pid for pid, (ppid, _) in processes.items() if ppid in ours}


def _wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited early:\n{proc.communicate()[0]}")
        if path.exists() and path.stat().st_size:
            return json.loads(path.read_text())
        time.sleep(0.5)
    raise AssertionError(f"the demo wrote no {path} within {timeout:g} s")


def test_demo_runs_the_product_and_stops_everything(tmp_path: Path) -> None:
    work_dir = tmp_path / "demo"
    info_file = tmp_path / "info.json"
    ports = {name: free_port() for name in ("port", "scheduler-proxy-port", "dashboard-port")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "hubgate", "demo", "--work-dir", str(work_dir)]
        + [f"--{name}={port}" for name, port in ports.items()]
        + ["--info-file", str(info_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        info = _wait_for_file(info_file, demo, 180)
        assert info["hub_url"] == f"http://127.0.0.1:{ports['port']}"
        assert info["dashboard_url"] == f"http://{{cluster}}.localhost:{ports['dashboard-port']}"
        assert set(info["users"]) == {"alice", "bob", "admin"}

        code = textwrap.dedent(
            LAPTOP.format(address=info["gateway_address"], proxy=info["proxy_address"])
        )
        env = {
            **os.environ,
            "JUPYTERHUB_API_TOKEN": info["users"]["bob"]["token"],
            "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        }
        out = checked(
            subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=300,
            )
        )
        assert values(out, "SUM") == ["45"]
        [uid] = values(out, "UID")
        assert int(uid) not in (0, os.getuid()), out
        cluster_pids = {int(pid) for pid in values(out, "PID")}
        assert len(cluster_pids) == 2, out
        demo_pids = _demo_processes(work_dir, ports["port"])
        assert len(demo_pids) >= 4, demo_pids  # hub, proxy, service, fork server
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            output, _ = demo.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            output, _ = demo.communicate()
            raise AssertionError(f"the demo did not stop within 90 s:\n{output}") from None
    assert demo.returncode == 0, output
    assert "hubgate demo is running." in output and "Stopping JupyterHub" in output, output
    assert f"token {info['users']['alice']['token']}" in output
    # Nothing of the demo is left: the hub, its proxy, the service, the fork server and
    # the cluster left running.
    left = (demo_pids | cluster_pids) & set(_processes())
    assert not left, {pid: _processes().get(pid) for pid in left}
