"""Start a real JupyterHub with the hubgate service on 127.0.0.1.

Used by ``hubgate demo`` and by the test suite, so the tests run exactly what a user
of the demo gets: the hub, configurable-http-proxy, the hubgate service as a managed
service, demo users with passwords and ``/hub/token``-style API tokens.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hub_service.auth import ADMIN_SCOPE
from ..hub_service.hub_servers import NEEDED_SCOPES as SERVER_WATCH_SCOPES
from ..spawners.accounts import untraversable_ancestor

ADMIN_SERVICE = "hubgate-admin-helper"
ADMIN_SCOPE_DESCRIPTION = (
    "Administer everyone's Dask clusters in hubgate: list, scale and stop them and open "
    "their dashboards (never their credentials)."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_chp() -> str:
    """The configurable-http-proxy command: the one bootstrap installed, else PATH."""
    candidates = [
        Path(sys.prefix) / "node" / "node_modules" / ".bin" / "configurable-http-proxy",
    ]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    raise RuntimeError(
        "configurable-http-proxy was not found; install it with "
        f"`npm install --prefix {Path(sys.prefix) / 'node'} configurable-http-proxy`"
        " (scripts/bootstrap.sh does this)"
    )


@dataclass
class HubSettings:
    work_dir: Path
    hub_port: int = 8000
    hub_api_port: int = 8081
    proxy_api_port: int = 8001
    service_port: int = 8789
    scheduler_proxy_port: int = 8786
    # the dashboard origin's listener: http://{cluster}.localhost:<port> (browsers send
    # every *.localhost name to loopback), one origin per cluster
    dashboard_port: int = 8790
    service_name: str = "dask-gateway"
    users: tuple[str, ...] = ("alice", "bob", "admin")
    admins: tuple[str, ...] = ("admin",)
    groups: dict[str, list[str]] = field(default_factory=lambda: {"staff": ["admin"]})
    # the hub's role "hubgate-admin" grants the service's admin scope to `admins` and
    # to the members of these groups
    admin_groups: tuple[str, ...] = ("staff",)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    # appended to the generated hubgate_config.py (tests set limits, db_url, ...)
    hubgate_config_extra: str = ""
    # added to the service's environment (tests run a previous release with PYTHONPATH)
    service_environment: dict[str, str] = field(default_factory=dict)
    stop_clusters_on_shutdown: bool = False
    # HubgateService.stop_clusters_with_server; the service's hub role then also gets
    # the scopes it needs to see users' servers
    stop_clusters_with_server: bool = False
    # appended to the generated jupyterhub_config.py (tests turn on named servers, ...)
    jupyterhub_config_extra: str = ""
    admin_token: str = field(default_factory=lambda: secrets.token_hex(32))
    # LocalBackend.work_dir: users' processes (their own uids) must reach it, so its
    # parent folders need o+x. None: <work_dir>/clusters when they have it, else a new
    # folder in the temporary directory that RunningHub.stop removes.
    clusters_dir: Path | None = None

    @classmethod
    def with_free_ports(cls, work_dir: Path, **kwargs: Any) -> HubSettings:
        return cls(
            work_dir=work_dir,
            hub_port=free_port(),
            hub_api_port=free_port(),
            proxy_api_port=free_port(),
            service_port=free_port(),
            scheduler_proxy_port=free_port(),
            dashboard_port=free_port(),
            **kwargs,
        )

    @property
    def cluster_work_dir(self) -> Path:
        """The local backend's work_dir: a folder per cluster, owned by its user."""
        return self.clusters_dir or self.work_dir / "clusters"

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    @property
    def gateway_address(self) -> str:
        return f"{self.hub_url}/services/{self.service_name}"

    @property
    def proxy_address(self) -> str:
        return f"gateway://127.0.0.1:{self.scheduler_proxy_port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard origin's template: one origin per cluster."""
        return f"http://{{cluster}}.localhost:{self.dashboard_port}"

    def dashboard_origin(self, cluster: str) -> str:
        return self.dashboard_url.replace("{cluster}", cluster)

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.service_port}"

    def singleuser_environment(self) -> dict[str, str]:
        """What the hub gives every single-user server, so `Gateway()` needs nothing."""
        bin_dir = str(Path(sys.executable).parent)
        return {
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            # API calls go straight to the service (one hop fewer than the hub's
            # proxy); links opened in browsers go through the hub
            "DASK_GATEWAY__ADDRESS": f"{self.service_url}/services/{self.service_name}",
            "DASK_GATEWAY__PUBLIC_ADDRESS": self.gateway_address,
            "DASK_GATEWAY__PROXY_ADDRESS": self.proxy_address,
            "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        }


def render_jupyterhub_config(s: HubSettings) -> str:
    scope = f"access:services!service={s.service_name}"
    bin_dir = Path(sys.executable).parent
    args = ["--allow-root"] if os.geteuid() == 0 else []
    services = [
        {
            "name": s.service_name,
            "url": s.service_url,
            "command": [
                sys.executable,
                "-m",
                "hubgate",
                "service",
                "--config",
                str(s.work_dir / "hubgate_config.py"),
            ],
            "oauth_no_confirm": True,
            # the clusters page's login carries the admin scope of those who hold it
            "oauth_client_allowed_scopes": [ADMIN_SCOPE],
            "display": True,
            "environment": {
                "HUBGATE_DATA_DIR": str(s.work_dir / "service-data"),
                **s.service_environment,
            },
        },
        {"name": ADMIN_SERVICE, "api_token": s.admin_token},
    ]
    roles = [
        # every user may call the service (JupyterHub's default 'user' role plus it)
        {"name": "user", "scopes": ["self", scope]},
        # the service looks up users' admin flag and groups (and, to stop clusters with
        # their servers, lists users' servers)
        {
            "name": "hubgate-service",
            "scopes": ["read:users", "read:groups"]
            + (list(SERVER_WATCH_SCOPES) if s.stop_clusters_with_server else []),
            "services": [s.service_name],
        },
        # hubgate's admins: everyone's clusters (never their credentials)
        {
            "name": "hubgate-admin",
            "scopes": [ADMIN_SCOPE],
            "users": list(s.admins),
            "groups": list(s.admin_groups),
        },
        {
            "name": "hubgate-admin-helper",
            "scopes": ["admin:users", "admin:servers", "tokens", "read:users", "admin:groups"],
            "services": [ADMIN_SERVICE],
        },
    ]
    groups = {g: {"users": members} for g, members in s.groups.items()}
    custom_scopes = {ADMIN_SCOPE: {"description": ADMIN_SCOPE_DESCRIPTION}}
    return f"""# Generated by hubgate: a JupyterHub on 127.0.0.1 with the hubgate service.
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = {s.hub_url + "/"!r}
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{s.hub_api_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{s.proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{find_chp()!r}]
c.JupyterHub.db_url = "sqlite:///{s.work_dir / "jupyterhub.sqlite"}"
c.JupyterHub.cookie_secret_file = "{s.work_dir / "jupyterhub_cookie_secret"}"
c.JupyterHub.pid_file = "{s.work_dir / "jupyterhub.pid"}"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {s.password!r}
c.Authenticator.allowed_users = {set(s.users)!r}
c.Authenticator.admin_users = {set(s.admins)!r}
c.JupyterHub.load_groups = {groups!r}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{s.work_dir / "homes" / "{username}"}"
c.Spawner.cmd = [{str(bin_dir / "jupyterhub-singleuser")!r}]
c.Spawner.args = {args!r}
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = {s.singleuser_environment()!r}
# the single-user server's own token may call the service (hubgate's lab extension),
# never as an admin: code in a server (and whoever shares it) holds that token; its
# access:servers!server=<user>/<server> tells the service which server made a cluster
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", {scope!r}]
c.JupyterHub.custom_scopes = {custom_scopes!r}
c.JupyterHub.load_roles = {roles!r}
c.JupyterHub.services = {services!r}
{s.jupyterhub_config_extra}
"""


def render_hubgate_config(s: HubSettings) -> str:
    return f"""# Generated by hubgate: the service's configuration for this hub.
c = get_config()  # noqa: F821
from hubgate.config.demo import configure_demo

configure_demo(c)
c.HubgateService.scheduler_proxy_address = "127.0.0.1:{s.scheduler_proxy_port}"
c.HubgateService.data_dir = "{s.work_dir / "service-data"}"
c.HubgateService.stop_clusters_on_shutdown = {s.stop_clusters_on_shutdown!r}
c.HubgateService.stop_clusters_with_server = {s.stop_clusters_with_server!r}
c.HubgateService.dashboard_url = {s.dashboard_url!r}
c.HubgateService.dashboard_bind_address = "127.0.0.1:{s.dashboard_port}"
c.LocalBackend.work_dir = "{s.cluster_work_dir}"
{s.hubgate_config_extra}
"""


def stop_process_group(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM a process started with ``start_new_session=True``, wait for it (SIGKILL
    after ``timeout``), then SIGKILL whatever it left in its process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class RunningHub:
    """A JupyterHub process with the hubgate service, started and stopped for real."""

    def __init__(self, settings: HubSettings):
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.tokens: dict[str, str] = {}
        self._made_clusters_dir: Path | None = None

    def start(self, timeout: float = 60) -> None:
        s = self.settings
        s.work_dir.mkdir(parents=True, exist_ok=True)
        (s.work_dir / "homes").mkdir(exist_ok=True)
        if s.clusters_dir is None and untraversable_ancestor(str(s.work_dir)):
            # e.g. pytest's /tmp/pytest-of-root (0700): a folder of this hub's own that
            # users' uids can pass through.
            self._made_clusters_dir = Path(tempfile.mkdtemp(prefix="hubgate-clusters-"))
            s.clusters_dir = self._made_clusters_dir
        (s.work_dir / "jupyterhub_config.py").write_text(render_jupyterhub_config(s))
        (s.work_dir / "hubgate_config.py").write_text(render_hubgate_config(s))
        log = open(s.work_dir / "jupyterhub.log", "ab")
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(s.work_dir / "jupyterhub_config.py")],
            cwd=s.work_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        self.wait_for(lambda: self.api("GET", "") is not None, timeout, "the hub's API")
        self.wait_for(self.service_ready, timeout, "the hubgate service")

    def wait_for(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterHub exited early; see {self.log_path()}:\n{self.log_tail()}"
                )
            try:
                if check():
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise TimeoutError(
            f"{what} did not come up in {timeout:g} s; see {self.log_path()}:\n{self.log_tail()}"
        )

    def log_path(self) -> Path:
        return self.settings.work_dir / "jupyterhub.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path().read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def service_ready(self) -> bool:
        url = f"{self.settings.gateway_address}/api/health"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """Call the hub's REST API (as the admin helper service by default)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.settings.hub_url}/hub/api{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"token {token or self.settings.admin_token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
            return json.loads(text) if text else {}

    def make_token(self, user: str, scopes: list[str] | None = None, note: str = "hubgate") -> str:
        """What /hub/token does: a token for the user with the user's own scopes (or
        narrower ones)."""
        body: dict[str, Any] = {"note": note}
        if scopes is not None:
            body["scopes"] = scopes
        return self.api("POST", f"/users/{user}/tokens", body)["token"]

    def make_user_tokens(self) -> dict[str, str]:
        self.tokens = {u: self.make_token(u, note="hubgate demo") for u in self.settings.users}
        return self.tokens

    def info(self) -> dict[str, Any]:
        s = self.settings
        return {
            "hub_url": s.hub_url,
            "gateway_address": s.gateway_address,
            "public_address": s.gateway_address,
            "proxy_address": s.proxy_address,
            "dashboard_url": s.dashboard_url,
            "users": {u: {"password": s.password, "token": self.tokens.get(u)} for u in s.users},
        }

    def stop(self, timeout: float = 30) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, timeout)
        if self._made_clusters_dir is not None:
            shutil.rmtree(self._made_clusters_dir, ignore_errors=True)
