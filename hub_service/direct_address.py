"""The scheduler's direct address, given to a cluster's owner only, so that hubgate's
client can connect without the scheduler proxy when it can reach the scheduler.

The address is the route the service itself uses (the backend's host and the port the
agent reported, ``Cluster.scheduler_address``), with the host optionally rewritten by
the operator's ``direct_connect_host`` template. Knowing it gives nobody access: the
scheduler accepts only TLS connections presenting a certificate of the cluster's own CA,
which only the owner receives. It is still withheld from everyone else (admins too), so
that nothing an admin receives is a way around the proxy's routing.
"""

from __future__ import annotations

from string import Formatter

from .model import Cluster, ClusterStatus
from .routes import host_port

__all__ = ["check_host_template", "direct_scheduler_address"]

HOST_FIELD = "host"


def check_host_template(template: str) -> str:
    """``template`` when it names no placeholder but ``{host}``, else a ValueError that
    says what to write."""
    try:
        fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(
            f"direct_connect_host {template!r} is not a valid template ({exc}); "
            "use {host} for the backend's host, e.g. '{host}-ib'"
        ) from None
    if fields - {HOST_FIELD} or not template.strip():
        raise ValueError(
            f"direct_connect_host {template!r} may only use the placeholder {{host}} "
            "(the backend's host for the scheduler), e.g. '{host}' or '{host}.ib.example.org'"
        )
    return template


def direct_scheduler_address(cluster: Cluster, viewer: str, host_template: str) -> str | None:
    """``tls://host:port`` of the cluster's scheduler for ``viewer`` when it is the
    owner and the cluster is running; None otherwise (and with no template: off)."""
    if not host_template or viewer != cluster.username:
        return None
    if cluster.status is not ClusterStatus.RUNNING or not cluster.scheduler_address:
        return None
    host, _, port = cluster.scheduler_address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return None
    host = host.removeprefix("[").removesuffix("]")
    return "tls://" + host_port(host_template.format(host=host), int(port))
