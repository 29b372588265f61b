"""The example configuration files in config/ load, and mean what they say."""

from __future__ import annotations

import runpy
from pathlib import Path

import yaml
from traitlets.config import Config

from hubgate.hub_service.app import HubgateService
from hubgate.hub_service.model import User
from hubgate.options import OptionSet

CONFIG = Path(__file__).parent.parent / "config"


def _run(path: Path) -> tuple[Config, dict]:
    c = Config()
    ns = runpy.run_path(str(path), init_globals={"get_config": lambda: c})
    return c, ns


def test_jupyterhub_config_registers_the_service_and_scopes() -> None:
    c, _ = _run(CONFIG / "jupyterhub_config.py")
    (service,) = c.JupyterHub.services
    assert service["name"] == "dask-gateway"
    assert "hubgate" in service["command"]
    scope = "access:services!service=dask-gateway"
    assert scope in c.Spawner.server_token_scopes
    user_role = next(r for r in c.JupyterHub.load_roles if r["name"] == "user")
    assert scope in user_role["scopes"]
    env = c.Spawner.environment
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"].startswith("gateway://")


def test_hubgate_config_gives_groups_different_options() -> None:
    c, ns = _run(CONFIG / "hubgate_config.py")
    app = HubgateService(config=c)
    assert app.db_url.startswith("postgresql+psycopg://")
    student = ns["options_for"](User("s", groups=("students",)))
    staff = ns["options_for"](User("t", groups=("staff",)))
    assert isinstance(student, OptionSet)
    assert "worker_cores" not in {f["field"] for f in student.spec()}
    assert "worker_cores" in {f["field"] for f in staff.spec()}
    assert app.limits_for(User("s", groups=("students",))).max_clusters == 2
    assert app.limits_for(User("t", groups=("staff",))).max_clusters == 5


def test_gateway_yaml_uses_the_dask_gateway_keys() -> None:
    data = yaml.safe_load((CONFIG / "gateway.yaml").read_text())["gateway"]
    assert data["auth"]["type"] == "jupyterhub"
    assert data["auth"]["kwargs"]["api_token"] == "{MY_HUB_TOKEN}"


def test_generate_config_documents_every_option(capsys) -> None:  # type: ignore[no-untyped-def]
    from hubgate.cli import main

    assert main(["generate-config"]) == 0
    text = capsys.readouterr().out
    for name in ("db_url", "cluster_options", "user_limits", "scheduler_proxy_address"):
        assert f"c.HubgateService.{name}" in text
