"""Fixtures for the client tests: a real dask-gateway-server 2026.3.0 to talk to."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(name="wait_for", scope="session")
def wait_for_fixture():
    """``wait_for(predicate, timeout, what)``: poll until true, else fail."""
    return wait_for


@dataclass
class GatewayServer:
    address: str
    proxy_address: str
    log: Path


# The server's default scheduler/worker commands (dask-scheduler, dask-worker) no longer
# exist with distributed >= 2026.6; the modules still run with ``python -m``.
CONFIG = """
import sys
from dask_gateway_server.options import Options, Integer, Float

c.DaskGateway.address = "127.0.0.1:{api_port}"
c.Proxy.address = "127.0.0.1:{proxy_port}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.ClusterConfig.scheduler_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
c.ClusterConfig.worker_cmd = [sys.executable, "-m", "distributed.cli.dask_worker"]
c.ClusterConfig.idle_timeout = 600
c.UnsafeLocalBackend.cluster_start_timeout = 180
c.UnsafeLocalBackend.worker_start_timeout = 180


def options_handler(options):
    return {{
        "worker_cores": options.worker_cores,
        "worker_memory": int(options.worker_memory * 2**30),
    }}


c.Backend.cluster_options = Options(
    Integer("worker_cores", default=1, min=1, max=2, label="Worker Cores"),
    Float("worker_memory", default=0.5, min=0.25, max=2, label="Worker Memory (GiB)"),
    handler=options_handler,
)
"""


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def dask_gateway_server(tmp_path_factory) -> GatewayServer:
    """dask-gateway-server 2026.3.0 (UnsafeLocalBackend, SimpleAuthenticator) with its
    Go proxy; the client's address is the proxy's, which also routes schedulers."""
    folder = tmp_path_factory.mktemp("dask-gateway-server")
    api_port, proxy_port = free_port(), free_port()
    config = folder / "dask_gateway_config.py"
    config.write_text(textwrap.dedent(CONFIG.format(api_port=api_port, proxy_port=proxy_port)))
    log = folder / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_GATEWAY")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "dask-gateway-server"), "-f", str(config)],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{proxy_port}"
    try:
        wait_for(
            lambda: proc.poll() is not None or _healthy(address + "/api/health"),
            timeout=120,
            what="dask-gateway-server to answer /api/health",
        )
        if proc.poll() is not None:
            raise AssertionError(f"dask-gateway-server exited:\n{log.read_text()[-4000:]}")
        yield GatewayServer(address=address, proxy_address=f"127.0.0.1:{proxy_port}", log=log)
    finally:
        if proc.poll() is None:
            # SIGINT: the server stops its clusters (in-memory DB) before exiting.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
