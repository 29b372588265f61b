"""hubgate: Dask clusters for JupyterHub users, wire-compatible with dask-gateway.

``from hubgate import Gateway, GatewayCluster`` works like ``dask_gateway``'s client.
"""

from . import dask_config  # noqa: F401  (registers the gateway.* dask config defaults)
from ._version import __version__
from .auth import BasicAuth, GatewayAuth, JupyterHubAuth, KerberosAuth, get_auth
from .client import (
    ClusterReport,
    ClusterStatus,
    Gateway,
    GatewayAuthError,
    GatewayCluster,
    GatewayClusterError,
    GatewayServerError,
    GatewayWarning,
)
from .options import Options, OptionsError
from .versions import VersionReport

__all__ = [
    "BasicAuth",
    "ClusterReport",
    "ClusterStatus",
    "Gateway",
    "GatewayAuth",
    "GatewayAuthError",
    "GatewayCluster",
    "GatewayClusterError",
    "GatewayServerError",
    "GatewayWarning",
    "JupyterHubAuth",
    "KerberosAuth",
    "Options",
    "OptionsError",
    "VersionReport",
    "__version__",
    "get_auth",
]
