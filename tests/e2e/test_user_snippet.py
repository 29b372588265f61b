"""The foundation issue's user snippet, end to end against a real JupyterHub with the
hubgate service, with the official dask-gateway client and with hubgate's own client:
from a laptop (a hub token, gateway.yaml or QHub-style arguments) and inside a spawned
single-user server."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.snippets import USER_SNIPPET
from tests.fixtures.hub import gateway_env, run_python

pytestmark = pytest.mark.slow

CLIENTS = ["dask_gateway", "hubgate"]


@pytest.mark.parametrize("client", CLIENTS)
def test_snippet_from_laptop_with_environment(hub: RunningHub, client: str, tmp_path: Path) -> None:
    out = run_python(USER_SNIPPET.format(client=client), gateway_env(hub, "alice"), tmp_path)
    assert "SNIPPET OK" in out
    link = next(line.split()[1] for line in out.splitlines() if line.startswith("DASHBOARD"))
    assert link.startswith(hub.settings.gateway_address + "/clusters/")


@pytest.mark.parametrize("client", CLIENTS)
def test_snippet_from_laptop_with_gateway_yaml(
    hub: RunningHub, client: str, tmp_path: Path
) -> None:
    """JASMIN's way: ~/.config/dask/gateway.yaml with a /hub/token token in a variable."""
    home = tmp_path / "home"
    (home / ".config" / "dask").mkdir(parents=True)
    (home / ".config" / "dask" / "gateway.yaml").write_text(
        textwrap.dedent(
            f"""\
            gateway:
              address: {hub.settings.gateway_address}
              proxy-address: tls://127.0.0.1:{hub.settings.scheduler_proxy_port}
              auth:
                type: jupyterhub
                kwargs:
                  api_token: "{{MY_HUB_TOKEN}}"
            """
        )
    )
    env = {
        k: v
        for k, v in gateway_env(hub, "alice").items()
        if not k.startswith("DASK_GATEWAY") and k != "JUPYTERHUB_API_TOKEN"
    }
    env["HOME"] = str(home)
    env["DASK_CONFIG"] = str(home / ".config" / "dask")
    env["MY_HUB_TOKEN"] = hub.make_token("alice", note="laptop")
    out = run_python(USER_SNIPPET.format(client=client), env, tmp_path)
    assert "SNIPPET OK" in out


@pytest.mark.parametrize("client", CLIENTS)
def test_qhub_style_arguments(hub: RunningHub, client: str, tmp_path: Path) -> None:
    """QHub's form: Gateway(address=..., auth='jupyterhub', proxy_address='tcp://...')
    with JUPYTERHUB_API_TOKEN set."""
    env = {k: v for k, v in gateway_env(hub, "bob").items() if not k.startswith("DASK_GATEWAY")}
    code = f"""
from {client} import Gateway
gateway = Gateway(address={hub.settings.gateway_address!r}, auth="jupyterhub",
                  proxy_address="tcp://127.0.0.1:{hub.settings.scheduler_proxy_port}")
cluster = gateway.new_cluster()
cluster.scale(1)
client = cluster.get_client()
assert client.submit(lambda x: x + 1, 41).result() == 42
cluster.shutdown()
print("QHUB OK")
"""
    assert "QHUB OK" in run_python(code, env, tmp_path)


@pytest.mark.parametrize("client", CLIENTS)
async def test_snippet_inside_single_user_server(kernel_in_server, client: str) -> None:
    """In a notebook kernel of a server the hub spawned; the user configures nothing."""
    kernel = await kernel_in_server("alice")
    out = await kernel.execute(USER_SNIPPET.format(client=client))
    assert "SNIPPET OK" in out
