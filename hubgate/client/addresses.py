"""Where things are: the scheduler proxy inferred from the gateway's address, the HTTP
proxy for the gateway, and the hub pages an address points to (for error messages)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import aiohttp
import yarl

from .dask_config import config_value

__all__ = ["http_proxy_kwargs", "infer_proxy_address", "service_name", "token_page"]


def infer_proxy_address(address: str, proxy_address: str | int | None) -> str:
    """The scheduler proxy as ``gateway://host:port``.

    ``None``: the host and port of ``address`` (80/443 by scheme, else 8786). An int
    (or digits): that port on ``address``'s host. A string with a scheme
    (``tls://``, ``tcp://``, ``gateway://``) or a bare ``host:port``: its host and port.
    """
    parsed = urlparse(address)
    if isinstance(proxy_address, str) and proxy_address.strip().isdigit():
        proxy_address = int(proxy_address)
    if proxy_address is None:
        port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme, 8786)
        netloc = f"{parsed.hostname}:{port}"
    elif isinstance(proxy_address, int):
        netloc = f"{parsed.hostname}:{proxy_address}"
    elif isinstance(proxy_address, str):
        proxy = urlparse(proxy_address)
        netloc = proxy.netloc if proxy.netloc else proxy_address.strip().rstrip("/")
    else:
        raise TypeError(f"proxy_address must be a string or a port number, got {proxy_address!r}")
    return f"gateway://{netloc}"


def http_proxy_kwargs(scheme: str) -> dict[str, Any]:
    """aiohttp's proxy arguments from ``gateway.http-client.proxy``."""
    setting = config_value("gateway.http-client.proxy")
    if setting is True:
        info = aiohttp.helpers.proxies_from_env().get(scheme)
        if info is not None:
            return {"proxy": info.proxy, "proxy_auth": info.proxy_auth}
    elif isinstance(setting, str) and setting:
        proxy, proxy_auth = aiohttp.helpers.strip_auth_from_url(yarl.URL(setting))
        return {"proxy": proxy, "proxy_auth": proxy_auth}
    return {"proxy": None, "proxy_auth": None}


def service_name(address: str) -> str:
    """The JupyterHub service name in a ``.../services/<name>`` address, else the usual
    ``dask-gateway``."""
    parts = urlparse(address).path.strip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "services":
        return parts[-1]
    return "dask-gateway"


def token_page(address: str) -> str:
    """The hub's token page for a service ``address`` (a placeholder when unknown)."""
    if "/services/" in address:
        return address.split("/services/", 1)[0] + "/hub/token"
    return "https://<your hub>/hub/token"
