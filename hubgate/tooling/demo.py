"""``hubgate demo``: a real JupyterHub on 127.0.0.1 with the hubgate service, demo users
and JupyterLab, until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import threading
from pathlib import Path

from .hubrunner import HubSettings, RunningHub, free_port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hubgate demo",
        description="Start a JupyterHub on 127.0.0.1 with the hubgate service (local "
        "backend), the users alice and bob and the admin 'admin', and JupyterLab.",
    )
    parser.add_argument("--port", type=int, default=8000, help="the hub's port (default 8000)")
    parser.add_argument(
        "--scheduler-proxy-port",
        type=int,
        default=8786,
        help="port of the scheduler proxy that clients connect to (default 8786)",
    )
    parser.add_argument(
        "--dashboard-port",
        type=int,
        default=8790,
        help="port of the dashboards' own origin, http://<cluster>.localhost:<port> (default 8790)",
    )
    parser.add_argument(
        "--work-dir",
        help="folder for the hub's and service's files (default: a new temporary folder)",
    )
    parser.add_argument("--password", help="password of the demo users (default: random)")
    parser.add_argument(
        "--info-file", help="write the URL, addresses, passwords and tokens as JSON here"
    )
    args = parser.parse_args(argv)

    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="hubgate-demo-")).resolve()
    settings = HubSettings(
        work_dir=work_dir,
        hub_port=args.port,
        hub_api_port=free_port(),
        proxy_api_port=free_port(),
        service_port=free_port(),
        scheduler_proxy_port=args.scheduler_proxy_port,
        dashboard_port=args.dashboard_port,
        stop_clusters_on_shutdown=True,
    )
    if args.password:
        settings.password = args.password
    hub = RunningHub(settings)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"Starting JupyterHub with hubgate in {work_dir} ...", flush=True)
    try:
        hub.start(timeout=120)
        hub.make_user_tokens()
        info = hub.info()
        if args.info_file:
            Path(args.info_file).write_text(json.dumps(info, indent=2))
        print(_banner(info), flush=True)
        while not stop.is_set() and hub.proc is not None and hub.proc.poll() is None:
            stop.wait(1)
    finally:
        print("Stopping JupyterHub, the hubgate service and every cluster ...", flush=True)
        hub.stop()
    return 0


def _banner(info: dict) -> str:
    users = "\n".join(
        f"    {name:<6} password {u['password']}   token {u['token']}"
        for name, u in info["users"].items()
    )
    return f"""
hubgate demo is running.

  JupyterHub:        {info["hub_url"]}/hub/login
  gateway address:   {info["gateway_address"]}
  scheduler proxy:   {info["proxy_address"]}
  clusters page:     {info["gateway_address"]}/
  dashboards:        {info["dashboard_url"]} (one origin per cluster; every
                     dashboard link opens through the gateway address first)

  Each user's clusters run under a uid of their own; 'admin' holds the admin scope.

  users (log in with the password; use the token from a laptop):
{users}

  From a laptop:
    export JUPYTERHUB_API_TOKEN=<token>
    python -c "from dask_gateway import Gateway; g = Gateway('{info["gateway_address"]}', auth='jupyterhub', proxy_address='{info["proxy_address"]}'); print(g.list_clusters())"

Press Ctrl-C to stop everything.
"""
