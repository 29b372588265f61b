"""hubgate: Dask clusters for JupyterHub users, wire-compatible with dask-gateway.

``from hubgate import Gateway, GatewayCluster`` works like ``dask_gateway``'s client.
The client's names are loaded on first use, so that the service (which imports
``hubgate.hub_service``) does not pay for ``distributed`` and the client's imports.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

_LAZY = {
    "BasicAuth": "client",
    "GatewayAuth": "client",
    "JupyterHubAuth": "client",
    "KerberosAuth": "client",
    "get_auth": "client",
    "ClusterReport": "client",
    "ClusterStatus": "client",
    "Gateway": "client",
    "GatewayAuthError": "client",
    "GatewayCluster": "client",
    "GatewayClusterError": "client",
    "GatewayServerError": "client",
    "GatewayWarning": "client",
    "Options": "options",
    "OptionsError": "options",
    "VersionReport": "client",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubgate' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
