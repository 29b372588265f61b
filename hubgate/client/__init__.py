"""hubgate's client, dask-gateway's API: ``Gateway`` (``gateway.py``), ``GatewayCluster``
(``cluster.py``), ``ClusterReport`` and ``ClusterStatus`` (``reports.py``), the exceptions
(``errors.py``), authentication (``auth.py``), the ``gateway://`` comm (``comm.py``), the
``gateway.*`` dask config keys (``dask_config.py``) and version checks (``versions.py``).

The names load on first use, like ``hubgate``'s own: ``auth`` and ``dask_config`` are
also read where ``distributed`` is not wanted (the lab extension's server side), and
importing one of them runs this file first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .addresses import infer_proxy_address
    from .auth import BasicAuth, GatewayAuth, JupyterHubAuth, KerberosAuth, get_auth
    from .cluster import GatewayCluster
    from .comm import GatewaySecurity
    from .errors import (
        GatewayAuthError,
        GatewayClusterError,
        GatewayServerError,
        GatewayWarning,
    )
    from .gateway import Gateway
    from .reports import ClusterReport, ClusterStatus
    from .versions import VersionReport

_LAZY = {
    "BasicAuth": "auth",
    "GatewayAuth": "auth",
    "JupyterHubAuth": "auth",
    "KerberosAuth": "auth",
    "get_auth": "auth",
    "infer_proxy_address": "addresses",
    "GatewayCluster": "cluster",
    "GatewaySecurity": "comm",
    "GatewayAuthError": "errors",
    "GatewayClusterError": "errors",
    "GatewayServerError": "errors",
    "GatewayWarning": "errors",
    "Gateway": "gateway",
    "ClusterReport": "reports",
    "ClusterStatus": "reports",
    "VersionReport": "versions",
}

__all__ = [
    "BasicAuth",
    "ClusterReport",
    "ClusterStatus",
    "Gateway",
    "GatewayAuth",
    "GatewayAuthError",
    "GatewayCluster",
    "GatewayClusterError",
    "GatewaySecurity",
    "GatewayServerError",
    "GatewayWarning",
    "JupyterHubAuth",
    "KerberosAuth",
    "VersionReport",
    "get_auth",
    "infer_proxy_address",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubgate.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
