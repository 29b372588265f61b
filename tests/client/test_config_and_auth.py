"""Dask config keys, templating, auth selection and address inference."""

from __future__ import annotations

import base64
import importlib

import dask.config
import pytest

import hubgate.client.dask_config
from hubgate import BasicAuth, Gateway, JupyterHubAuth, KerberosAuth, get_auth
from hubgate.client import infer_proxy_address
from hubgate.client.auth import GatewayAuth


class TokenAuth(GatewayAuth):
    """A custom auth class, loaded by dotted path."""

    def __init__(self, token: str = "", extra: str = "") -> None:
        self.token = token
        self.extra = extra


def test_defaults_use_dask_gateway_keys():
    assert dask.config.get("gateway.auth.type") == "basic"
    assert dask.config.get("gateway.auth.kwargs") == {}
    assert dask.config.get("gateway.http-client.proxy") is True
    assert dask.config.get("gateway.cluster.options") == {}
    assert dask.config.get("gateway.address") is None


def test_loading_defaults_again_never_clobbers_user_values():
    import dask_gateway  # noqa: F401  (the official client loads its own defaults too)

    with dask.config.set({"gateway.auth.type": "jupyterhub", "gateway.address": "http://x"}):
        hubgate.client.dask_config.load_defaults()
        importlib.reload(importlib.import_module("dask_gateway.config"))
        assert dask.config.get("gateway.auth.type") == "jupyterhub"
        assert dask.config.get("gateway.address") == "http://x"


def test_environment_variables_reach_the_config(monkeypatch):
    env = {
        "DASK_GATEWAY__ADDRESS": "http://gateway.example.org:8000/services/dask-gateway",
        "DASK_GATEWAY__PROXY_ADDRESS": "8786",
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        "DASK_GATEWAY__AUTH__KWARGS__API_TOKEN": "{MY_HUB_TOKEN}",
    }
    monkeypatch.setenv("MY_HUB_TOKEN", "secret-token")
    with dask.config.set(dask.config.collect(paths=[], env=env)):
        with Gateway() as gateway:
            assert gateway.address == "http://gateway.example.org:8000/services/dask-gateway"
            assert gateway.proxy_address == "gateway://gateway.example.org:8786"
            assert isinstance(gateway.auth, JupyterHubAuth)
            assert gateway.auth.api_token == "secret-token"


def test_missing_address_is_explained():
    with dask.config.set({"gateway.address": None}):
        with pytest.raises(ValueError, match="No gateway address.*DASK_GATEWAY__ADDRESS"):
            Gateway()


def test_templates_name_the_missing_variable(monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with dask.config.set(
        {
            "gateway.auth.type": "jupyterhub",
            "gateway.auth.kwargs": {"api_token": "{NOT_SET_ANYWHERE}"},
        }
    ):
        with pytest.raises(ValueError) as info:
            get_auth()
    assert str(info.value) == (
        "gateway.auth.kwargs.api_token refers to the environment variable NOT_SET_ANYWHERE, "
        "which is not set; set NOT_SET_ANYWHERE or change gateway.auth.kwargs.api_token in "
        "your dask configuration"
    )
    monkeypatch.setenv("IMAGE", "pangeo/notebook:1")
    with dask.config.set(
        {
            "gateway.address": "http://h:1",
            "gateway.cluster.options": {"image": "{IMAGE}", "worker_cores": 2},
        }
    ):
        with Gateway(auth="basic") as gateway:
            assert gateway._config_cluster_options() == {
                "image": "pangeo/notebook:1",
                "worker_cores": 2,
            }


def test_get_auth_choices(monkeypatch):
    given = BasicAuth("bob", "pw")
    assert get_auth(given) is given
    assert isinstance(get_auth("basic"), BasicAuth)
    assert isinstance(get_auth(), BasicAuth)  # the default type
    assert isinstance(get_auth("kerberos"), KerberosAuth)

    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "from-env")
    hub = get_auth("jupyterhub")
    assert hub.pre_request(None) == ({"Authorization": "jupyterhub from-env"}, None)
    assert "from-env" not in repr(hub)
    assert JupyterHubAuth("explicit").api_token == "explicit"

    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    with pytest.raises(ValueError, match="No JupyterHub API token.*hub/token"):
        get_auth("jupyterhub")

    with dask.config.set({"gateway.auth.kwargs": {"token": "t", "extra": "e"}}):
        custom = get_auth(f"{__name__}.TokenAuth")
    assert isinstance(custom, TokenAuth) and (custom.token, custom.extra) == ("t", "e")
    with pytest.raises(ValueError, match="Unknown auth type 'magic'"):
        get_auth("magic")
    with pytest.raises(ImportError, match="Cannot import the auth class"):
        get_auth("no_such_module.Auth")
    with pytest.raises(TypeError, match="must be a GatewayAuth"):
        get_auth(dict)


def test_basic_auth_header():
    headers, context = BasicAuth("alice", "s3cret").pre_request(None)
    assert headers == {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()}
    assert context is None


def test_kerberos_without_pykerberos_says_what_to_install():
    try:
        import kerberos  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pykerberos is installed")
    with pytest.raises(ImportError, match="pip install pykerberos"):
        KerberosAuth().pre_request(None)


@pytest.mark.parametrize(
    ("address", "proxy", "expected"),
    [
        ("http://hub.example.org/services/dask-gateway", None, "gateway://hub.example.org:80"),
        ("https://hub.example.org/services/dask-gateway", None, "gateway://hub.example.org:443"),
        ("http://10.0.0.1:8000", None, "gateway://10.0.0.1:8000"),
        ("http://10.0.0.1:8000", 8786, "gateway://10.0.0.1:8786"),
        ("http://10.0.0.1:8000", "8786", "gateway://10.0.0.1:8786"),
        (
            "http://10.0.0.1:8000",
            "tls://proxy.example.org:8786",
            "gateway://proxy.example.org:8786",
        ),
        (
            "http://10.0.0.1:8000",
            "tcp://proxy.example.org:8786",
            "gateway://proxy.example.org:8786",
        ),
        ("http://10.0.0.1:8000", "proxy.example.org:9000", "gateway://proxy.example.org:9000"),
        ("http://10.0.0.1:8000", "gateway://p:1", "gateway://p:1"),
    ],
)
def test_proxy_address_inference(address, proxy, expected):
    assert infer_proxy_address(address, proxy) == expected


def test_gateway_addresses_from_arguments_and_config():
    with Gateway("http://h:8000/prefix/", auth="basic") as gateway:
        assert gateway.address == "http://h:8000/prefix"
        assert gateway.public_address == "http://h:8000/prefix"
        assert gateway.proxy_address == "gateway://h:8000"
        assert repr(gateway) == "Gateway<http://h:8000/prefix>"
    with dask.config.set(
        {"gateway.public-address": "https://public.example.org/gw/", "gateway.proxy-address": 9999}
    ):
        with Gateway("http://h:8000", auth="basic") as gateway:
            assert gateway.public_address == "https://public.example.org/gw"
            assert gateway.proxy_address == "gateway://h:9999"


def test_http_proxy_setting(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://envproxy:3128")
    with Gateway("http://h:8000", auth="basic") as gateway:
        assert str(gateway._request_kwargs["proxy"]) == "http://envproxy:3128"
    with dask.config.set({"gateway.http-client.proxy": False}):
        with Gateway("http://h:8000", auth="basic") as gateway:
            assert gateway._request_kwargs["proxy"] is None
    with dask.config.set({"gateway.http-client.proxy": "http://user:pw@explicit:8080"}):
        with Gateway("http://h:8000", auth="basic") as gateway:
            assert str(gateway._request_kwargs["proxy"]) == "http://explicit:8080"
            assert gateway._request_kwargs["proxy_auth"].login == "user"


def test_close_is_idempotent_and_stops_the_loop():
    gateway = Gateway("http://h:8000", auth="basic")
    loop = gateway.loop.asyncio_loop
    assert loop.is_running()
    gateway.close()
    gateway.close()
    assert not loop.is_running()
