"""Direct connect: talk to a cluster's scheduler itself instead of through the gateway's
scheduler proxy, when this process can reach it.

A hubgate service gives a cluster's owner the scheduler's own ``tls://host:port``
(``direct_scheduler_address`` in ``api/hubgate/clusters/<name>``). The setting
``gateway.direct-connect`` (or ``Gateway(direct_connect=...)``) decides what to do with it:

- ``"auto"`` (default, also ``True``): try it once with the cluster's TLS credentials
  within ``gateway.direct-connect-timeout`` seconds; if that fails (unreachable, refused,
  TLS refused), use the proxy, saying so only in a debug log line.
- ``"always"``: use it, without a fallback; an error when there is none or it fails.
- ``"never"`` (also ``False``): always the proxy, as dask-gateway's client does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from distributed.comm.core import parse_address
from distributed.comm.registry import get_backend

from .comm import GatewaySecurity
from .dask_config import config_value
from .errors import GatewayClusterError

__all__ = [
    "AUTO",
    "ALWAYS",
    "NEVER",
    "choose_scheduler_address",
    "direct_connect_timeout",
    "parse_direct_connect",
]

logger = logging.getLogger(__name__)

AUTO = "auto"
ALWAYS = "always"
NEVER = "never"
_CHOICES = (AUTO, ALWAYS, NEVER)
DEFAULT_TIMEOUT = 2.0


def parse_direct_connect(value: Any, key: str = "gateway.direct-connect") -> str:
    """``"auto"``, ``"always"`` or ``"never"`` from a setting (None: the default,
    booleans: ``True`` is auto, ``False`` never); a ValueError naming ``key`` otherwise."""
    if value is None:
        return AUTO
    if isinstance(value, bool):
        return AUTO if value else NEVER
    if isinstance(value, str) and value.strip().lower() in _CHOICES:
        return value.strip().lower()
    raise ValueError(
        f"{key} must be one of 'auto' (try the scheduler directly, else the proxy), "
        f"'always' (only directly) or 'never' (only the proxy), or true/false; got {value!r}"
    )


def direct_connect_timeout() -> float:
    """Seconds one direct attempt may take (``gateway.direct-connect-timeout``)."""
    key = "gateway.direct-connect-timeout"
    value = config_value(key)
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not 0 < seconds <= 300:
        raise ValueError(f"{key} must be a number of seconds above 0 (at most 300); got {value!r}")
    return seconds


async def _can_connect(address: str, security: GatewaySecurity, timeout: float) -> str | None:
    """None when one TLS connection to ``address`` completes distributed's handshake
    within ``timeout`` seconds, else why not. Only one attempt: a refused port answers
    at once, and then the proxy should be used at once."""
    scheme, location = parse_address(address)
    connector = get_backend(scheme).get_connector()
    comm = None
    try:
        async with asyncio.timeout(timeout):
            comm = await connector.connect(
                location, deserialize=False, **security.get_connection_args("client")
            )
            # With TLS 1.3 a refused client certificate shows only on the first read.
            await comm.write(comm.handshake_info())
            await comm.read()
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except (OSError, ValueError) as exc:  # CommClosedError is an OSError
        return str(exc) or type(exc).__name__
    finally:
        if comm is not None:
            comm.abort()
    return None


async def choose_scheduler_address(
    cluster: str,
    proxy_address: str,
    direct_address: str | None,
    security: GatewaySecurity,
    mode: str,
    timeout: float,
) -> str:
    """The address to give ``distributed`` for ``cluster``: ``direct_address`` when
    ``mode`` allows it and it answers, else ``proxy_address`` (``"always"``: raise)."""
    if mode == NEVER:
        return proxy_address
    if not direct_address:
        if mode == ALWAYS:
            raise GatewayClusterError(
                f"gateway.direct-connect is 'always', but the gateway gives no direct "
                f"address for cluster {cluster} (not a hubgate service, not your cluster, "
                "or the service's direct_connect is off); use 'auto' or 'never'"
            )
        return proxy_address
    problem = await _can_connect(direct_address, security, timeout)
    if problem is None:
        logger.debug(
            "Cluster %s: connecting to its scheduler directly at %s", cluster, direct_address
        )
        return direct_address
    if mode == ALWAYS:
        raise GatewayClusterError(
            f"Cannot connect to the scheduler of cluster {cluster} directly at "
            f"{direct_address} ({problem}), and gateway.direct-connect is 'always'; "
            "use 'auto' to fall back to the scheduler proxy"
        )
    logger.debug(
        "Cluster %s: its scheduler at %s cannot be reached directly (%s); using the proxy %s",
        cluster,
        direct_address,
        problem,
        proxy_address,
    )
    return proxy_address
