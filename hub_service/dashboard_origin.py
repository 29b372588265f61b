"""Where dashboards are served: the dashboard origin, one per cluster or one for all.

``HubgateService.dashboard_url`` is an origin (scheme, host, optional port, no path).
With ``{cluster}`` in its host (``https://{cluster}.dask.example.org``, in the style of
JupyterHub's ``subdomain_host``) every cluster gets an origin of its own, so no two
users' dashboards share cookies, storage or same-origin rights. Without it
(``https://dask.example.org``) all dashboards share one origin that is still separate
from the hub's. Either way a dashboard's path is ``/clusters/<name>/...``, the
scheduler's ``http_prefix``. Pure URL logic, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["CLUSTER_FIELD", "DashboardOrigin", "potentially_trustworthy"]

CLUSTER_FIELD = "{cluster}"
# What a cluster name may be to stand in a host name (the service's are 32 hex digits).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


def potentially_trustworthy(scheme: str, host: str) -> bool:
    """Whether browsers treat the origin as secure (``Secure`` cookies work there):
    https, or a loopback name or address."""
    if scheme == "https":
        return True
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DashboardOrigin:
    """A parsed ``dashboard_url``."""

    scheme: str
    host: str  # may contain {cluster}
    port: int | None

    @classmethod
    def parse(cls, url: str) -> DashboardOrigin:
        """Parse and check a ``dashboard_url``; ``ValueError`` says what is wrong."""
        probe = url.replace(CLUSTER_FIELD, "cluster")
        parts = urlsplit(probe)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"dashboard_url {url!r} must be an http or https origin, such as "
                "https://{cluster}.dask.example.org"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(
                f"dashboard_url {url!r} must be an origin without a path: dashboards are "
                "served at /clusters/<name>/ on it"
            )
        netloc = urlsplit(url).netloc
        host = netloc.rsplit(":", 1)[0] if parts.port is not None else netloc
        if host.count(CLUSTER_FIELD) > 1 or (
            CLUSTER_FIELD in host and not host.startswith(CLUSTER_FIELD)
        ):
            raise ValueError(
                f"dashboard_url {url!r}: {CLUSTER_FIELD} may appear once, at the start of "
                "the host name (https://{cluster}.dask.example.org)"
            )
        return cls(scheme=parts.scheme, host=host.lower(), port=parts.port)

    @property
    def per_cluster(self) -> bool:
        return CLUSTER_FIELD in self.host

    @property
    def secure(self) -> bool:
        """Whether cookies set here can be ``Secure`` (and so ``Partitioned``)."""
        return potentially_trustworthy(self.scheme, self.host.replace(CLUSTER_FIELD, "x"))

    def origin_for(self, cluster: str) -> str:
        host = self.host.replace(CLUSTER_FIELD, cluster.lower())
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{host}{port}"

    def host_serves(self, request_host: str, cluster: str) -> bool:
        """Whether a request that arrived for ``request_host`` (the Host header) may be
        answered with ``cluster``'s dashboard: on per-cluster origins only the cluster's
        own host; on a single origin any host the listener receives."""
        if not self.per_cluster:
            return True
        hostname = _hostname(request_host)
        pattern = re.escape(self.host).replace(re.escape(CLUSTER_FIELD), f"({_LABEL})")
        found = re.fullmatch(pattern, hostname)
        return found is not None and found.group(1) == cluster.lower()


def _hostname(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host
