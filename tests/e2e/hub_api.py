"""Helpers for the operations tests: hubgate's REST API as a user, a hub configured for
fast operations tests, client code in a subprocess, and what a cluster left on the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hubgate.tooling.hubrunner import RunningHub
from tests.fixtures.hub import gateway_env

# A hub whose options reach the knobs these tests turn: an idle timeout in seconds, a
# Python interpreter, environment variables and a worker setup script; short timeouts.
OPS_HUB_CONFIG = """
from hubgate.options import (
    Integer, OptionSet, String, environment_variables_field, standard_handler,
    worker_cores_field, worker_memory_field, worker_setup_field,
)
c.HubgateService.cluster_options = OptionSet(
    worker_cores_field(default=1, max=2),
    worker_memory_field(default=1, max=2),
    environment_variables_field(),
    worker_setup_field(),
    Integer("idle_timeout", 0, min=0, max=3600, label="Idle timeout (seconds)",
            help="Seconds without tasks before the cluster stops; 0 keeps it."),
    String("python", "", label="Python", help="The interpreter of scheduler and workers."),
    handler=standard_handler,
)
c.HubgateService.cluster_config = {"max_workers": 4, "scheduler_memory": "1G"}
c.HubgateService.cluster_start_timeout = 20
c.HubgateService.worker_start_failure_limit = 3
"""


class HubgateAPI:
    """hubgate's own API (``api/hubgate/...``) with one user's token."""

    def __init__(self, hub: RunningHub, user: str):
        self.hub = hub
        self.user = user
        self.base = hub.settings.gateway_address + "/api/hubgate/"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"token {self.hub.tokens[self.user]}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                text = resp.read()
                return resp.status, json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            text = exc.read()
            return exc.code, json.loads(text) if text else None

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path} -> {status}: {data}"
        return data

    def create(self, **options: Any) -> dict[str, Any]:
        return self.ok("POST", "clusters", {"options": options})

    def cluster(self, name: str) -> dict[str, Any]:
        return self.ok("GET", f"clusters/{name}")

    def wait_for(
        self, name: str, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 120
    ) -> dict[str, Any]:
        """Poll the cluster's record until ``check`` holds (generous timeouts: a loaded
        machine is slow, and no assertion here is about speed)."""
        deadline = time.monotonic() + timeout
        record = self.cluster(name)
        while not check(record):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen in {timeout} s; record: {record}")
            time.sleep(0.3)
            record = self.cluster(name)
        return record

    def wait_running(self, name: str) -> dict[str, Any]:
        record = self.wait_for(name, lambda r: r["status"] != "PENDING", "start")
        assert record["status"] == "RUNNING", record
        return record

    def stop_all(self, statuses: str = "pending,running") -> None:
        for c in self.ok("GET", f"clusters?status={statuses}")["clusters"]:
            self.call("DELETE", f"clusters/{c['name']}")
        for c in self.ok("GET", f"clusters?status={statuses}")["clusters"]:
            self.wait_for(c["name"], lambda r: r["status"] in ("STOPPED", "FAILED"), "stop", 60)


def run_client(
    hub: RunningHub, user: str, code: str, cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run user code in a fresh Python process, as a laptop with a hub token would."""
    env = gateway_env(hub, user)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def checked(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def service_log(hub: RunningHub) -> str:
    """The service's log: the hub runs hubgate as a managed service, so it is the hub's."""
    return hub.log_path().read_text(errors="replace")


def values(out: str, key: str) -> list[str]:
    """The words after ``KEY`` on the lines of ``out`` that start with it."""
    return [line.split(None, 1)[1] for line in out.splitlines() if line.startswith(key + " ")]


def processes_of(cluster_name: str) -> list[int]:
    """Pids of processes that belong to the cluster: its name in their command line,
    environment or working directory (the local backend runs them in its folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            parts = [
                (entry / "cmdline").read_bytes(),
                (entry / "environ").read_bytes(),
                os.readlink(entry / "cwd").encode(),
            ]
        except OSError:
            continue
        if any(cluster_name.encode() in part for part in parts):
            found.append(int(entry.name))
    return found


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s")
        time.sleep(0.3)


def leftovers(hub: RunningHub, cluster_name: str) -> list[str]:
    """What the local backend left of a stopped cluster: folders (credentials) are
    removed, logs stay for ``get_logs``."""
    folder = hub.settings.work_dir / "clusters" / cluster_name
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir())
