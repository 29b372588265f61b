"""What the service takes from a scheduler agent's ``hello``: ports, never hosts.

The scheduler runs the user's code, so anything it reports is hostile input. The
service builds the scheduler and dashboard routes from the host the backend knows
(``Backend.route_host``) and only the port numbers reported here, checked to be ports.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ROLES = ("scheduler", "dashboard")


class RefusedAddress(ValueError):
    """A ``hello`` whose addresses the service does not accept; the text says why."""


@dataclass(frozen=True)
class ReportedPorts:
    scheduler: int
    dashboard: int | None  # None: the scheduler serves no dashboard


def _port(value: Any, role: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise RefusedAddress(f"the {role} port it reported ({value!r}) is not a port number")
    return value


def _port_of_address(address: Any, role: str) -> int | None:
    """The port of an address as older agents report it (``tls://host:port``)."""
    if not address:
        return None
    try:
        port = urlsplit(str(address)).port
    except ValueError:
        port = None
    if port is None:
        raise RefusedAddress(f"the {role} address it reported ({address!r}) has no valid port")
    return _port(port, role)


def reported_ports(msg: dict[str, Any], fixed: dict[str, int]) -> ReportedPorts:
    """The ports of a ``hello``: ``<role>_port`` (an integer), else the port of
    ``<role>_address``. A backend's ``fixed`` ports must be the ones reported."""
    ports: dict[str, int | None] = {}
    for role in ROLES:
        key = f"{role}_port"
        if msg.get(key) is not None:
            ports[role] = _port(msg[key], role)
        else:
            ports[role] = _port_of_address(msg.get(f"{role}_address"), role)
        expected = fixed.get(role)
        if expected is not None and ports[role] not in (None, expected):
            raise RefusedAddress(
                f"the {role} port it reported ({ports[role]}) is not {expected}, the port "
                f"every {role} listens on with this backend"
            )
    scheduler, dashboard = ports["scheduler"], ports["dashboard"]
    if scheduler is None:
        raise RefusedAddress("it reported no scheduler port")
    if dashboard == scheduler:
        raise RefusedAddress(f"it reported port {scheduler} for both scheduler and dashboard")
    return ReportedPorts(scheduler, dashboard)


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def reported_host(address: Any) -> str:
    """The host part of a reported address, for the log only ("" if none)."""
    try:
        return urlsplit(str(address or "")).hostname or ""
    except ValueError:
        return ""
