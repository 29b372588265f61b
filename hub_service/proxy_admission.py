"""Which connections the scheduler proxy takes: its limits and their bookkeeping.

Every accepted connection counts as a *connection* until it is closed and as a
*handshake* until it is routed (its ClientHello read and its scheduler connected), both
overall and per client address. A connection over any cap is closed at once.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Admission", "ProxyLimits", "Refusal", "address_key"]

# IPv6 clients are counted per /64: one host commonly has a whole /64 to pick from.
_IPV6_PREFIX = 64


@dataclass(frozen=True)
class ProxyLimits:
    """The proxy's caps and timeouts (``HubgateService.scheduler_proxy_*`` documents each;
    0 turns a cap or the idle timeout off)."""

    max_connections: int = 10_000
    max_connections_per_address: int = 1_000
    max_handshakes: int = 4_096
    max_handshakes_per_address: int = 64
    hello_timeout: float = 10.0
    connect_timeout: float = 10.0
    idle_timeout: float = 3600.0
    relay_threads: int = 2

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_connections_per_address", "max_handshakes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no cap) or more, got {getattr(self, name)}")
        if self.max_handshakes_per_address < 0:
            raise ValueError("max_handshakes_per_address must be 0 (no cap) or more")
        if self.hello_timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("hello_timeout and connect_timeout must be more than 0 s")
        if self.idle_timeout < 0:
            raise ValueError("idle_timeout must be 0 (none) or more")
        if self.relay_threads < 1:
            raise ValueError("relay_threads must be at least 1")


class Refusal(NamedTuple):
    """Which cap a connection is over, and by how much (for the log)."""

    cap: str
    detail: str

    def __str__(self) -> str:
        return f"{self.detail} ({self.cap})"


def address_key(host: str) -> str:
    """The client address a per-address cap counts: the IPv4 address (IPv4-mapped IPv6
    included) or the IPv6 /64 network; the text itself if it is no IP address."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, _IPV6_PREFIX), strict=False))
    return str(ip)


class Admission:
    """Counts of open connections and handshakes, overall and per address (thread-safe:
    connections end in the relay threads)."""

    def __init__(self, limits: ProxyLimits, max_connections: int | None = None) -> None:
        self.limits = limits
        # The overall cap actually enforced (lowered to what the descriptor limit allows).
        self.max_connections = (
            limits.max_connections if max_connections is None else max_connections
        )
        self._lock = threading.Lock()
        self._connections: Counter[str] = Counter()
        self._handshakes: Counter[str] = Counter()
        self._connections_total = 0
        self._handshakes_total = 0

    @property
    def connections(self) -> int:
        return self._connections_total

    @property
    def handshakes(self) -> int:
        return self._handshakes_total

    def admit(self, key: str) -> Refusal | None:
        """Count a new connection from ``key`` in; or, over a cap, say which (and count
        nothing)."""
        limits = self.limits
        with self._lock:
            if _over(self._connections_total, self.max_connections):
                return Refusal("max_connections", f"{self.max_connections} connections are open")
            if _over(self._handshakes_total, limits.max_handshakes):
                return Refusal(
                    "max_handshakes", f"{limits.max_handshakes} handshakes are in progress"
                )
            if _over(self._connections[key], limits.max_connections_per_address):
                return Refusal(
                    "max_connections_per_address",
                    f"{limits.max_connections_per_address} connections from {key} are open",
                )
            if _over(self._handshakes[key], limits.max_handshakes_per_address):
                return Refusal(
                    "max_handshakes_per_address",
                    f"{limits.max_handshakes_per_address} handshakes from {key} are in progress",
                )
            self._connections[key] += 1
            self._handshakes[key] += 1
            self._connections_total += 1
            self._handshakes_total += 1
            return None

    def handshake_done(self, key: str) -> None:
        with self._lock:
            _decrement(self._handshakes, key)
            self._handshakes_total -= 1

    def connection_closed(self, key: str) -> None:
        with self._lock:
            _decrement(self._connections, key)
            self._connections_total -= 1


def _over(count: int, cap: int) -> bool:
    return cap > 0 and count >= cap


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
