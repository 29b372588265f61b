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


def test_the_example_hub_grants_what_stopping_clusters_with_servers_needs() -> None:
    from hubgate.hub_service.hub_servers import NEEDED_SCOPES

    hubgate, _ = _run(CONFIG / "hubgate_config.py")
    assert HubgateService(config=hubgate).stop_clusters_with_server
    c, _ = _run(CONFIG / "jupyterhub_config.py")
    (role,) = [r for r in c.JupyterHub.load_roles if "dask-gateway" in r.get("services", [])]
    assert set(NEEDED_SCOPES) <= set(role["scopes"])
    # a server's token names its server, so clusters made in it can go with it
    assert "access:servers!server" in c.Spawner.server_token_scopes
    values = yaml.safe_load((CONFIG / "kubernetes" / "values.yaml").read_text())["hub"]
    assert "access:servers!server" in values["loadRoles"]["server"]["scopes"]


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
    from hubgate.tooling.cli import main

    assert main(["generate-config"]) == 0
    text = capsys.readouterr().out
    for name in ("db_url", "cluster_options", "user_limits", "scheduler_proxy_address"):
        assert f"c.HubgateService.{name}" in text


def test_admin_powers_are_the_custom_scope_granted_by_a_role() -> None:
    from hubgate.hub_service.auth import ADMIN_SCOPE

    c, _ = _run(CONFIG / "jupyterhub_config.py")
    assert ADMIN_SCOPE.startswith("custom:")  # JupyterHub's rule for custom scopes
    assert c.JupyterHub.custom_scopes[ADMIN_SCOPE]["description"]
    (role,) = [r for r in c.JupyterHub.load_roles if ADMIN_SCOPE in r["scopes"]]
    assert role["scopes"] == [ADMIN_SCOPE] and role["groups"]
    # the clusters page's login may carry it; a notebook server's token never does
    assert c.JupyterHub.services[0]["oauth_client_allowed_scopes"] == [ADMIN_SCOPE]
    assert ADMIN_SCOPE not in c.Spawner.server_token_scopes
    hubgate, _ = _run(CONFIG / "hubgate_config.py")
    assert HubgateService(config=hubgate).admin_scope == ADMIN_SCOPE
    assert "admin_groups" not in hubgate.HubgateService

    values = yaml.safe_load((CONFIG / "kubernetes" / "values.yaml").read_text())["hub"]
    assert ADMIN_SCOPE in values["config"]["JupyterHub"]["custom_scopes"]
    assert values["loadRoles"]["hubgate-admin"]["scopes"] == [ADMIN_SCOPE]
    assert values["services"]["dask-gateway"]["oauth_client_allowed_scopes"] == [ADMIN_SCOPE]
    assert ADMIN_SCOPE not in values["loadRoles"]["server"]["scopes"]


def test_batch_and_kubernetes_agents_report_over_tls() -> None:
    for path in (
        CONFIG / "slurm" / "hubgate_config.py",
        CONFIG / "kubernetes" / "hubgate_config.py",
    ):
        c, _ = _run(path)
        assert c.HubgateService.agent_url.startswith("wss://"), path


def test_admin_groups_is_ignored_with_a_warning_that_names_the_scope() -> None:
    import logging

    records: list[logging.LogRecord] = []
    c = Config()
    c.HubgateService.admin_groups = ["hpc-support"]
    app = HubgateService()
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    app.log.addHandler(handler)
    try:
        app.update_config(c)
    finally:
        app.log.removeHandler(handler)
    (record,) = [r for r in records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert "admin_groups = ['hpc-support'] is ignored" in message
    assert "custom:hubgate:admin" in message and "'groups': ['hpc-support']" in message


def test_examples_serve_dashboards_from_per_cluster_origins() -> None:
    from hubgate.hub_service.dashboard_origin import DashboardOrigin

    for path in (
        CONFIG / "hubgate_config.py",
        CONFIG / "slurm" / "hubgate_config.py",
        CONFIG / "kubernetes" / "hubgate_config.py",
    ):
        c, _ = _run(path)
        origin = DashboardOrigin.parse(c.HubgateService.dashboard_url)
        assert origin.per_cluster and origin.scheme == "https", path
        assert c.HubgateService.dashboard_bind_address.endswith(":8790"), path
