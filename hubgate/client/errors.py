"""The client's exceptions, and which one an HTTP error answer from the gateway becomes.

The mapping is dask-gateway's (400/404/422: ``ValueError``, 409:
``GatewayClusterError``, 401/403: ``GatewayAuthError``, 5xx: ``GatewayServerError``), so
code written for its client catches the same types; the texts say what to do.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import aiohttp

from .addresses import service_name, token_page

__all__ = [
    "GatewayAuthError",
    "GatewayClusterError",
    "GatewayServerError",
    "GatewayWarning",
    "response_error",
    "warn_if_not_ok",
]


class GatewayClusterError(Exception):
    """Starting, stopping or scaling a cluster failed; the text says why."""


class GatewayServerError(Exception):
    """The gateway server failed (5xx)."""


class GatewayWarning(UserWarning):
    """Something the user should know, e.g. a scale request was clamped to a limit."""


class GatewayAuthError(aiohttp.ClientResponseError):
    """The gateway refused the credentials (401/403).

    A ``ClientResponseError`` (what dask-gateway's client raises here) whose text says
    what to do.
    """

    def __str__(self) -> str:
        return self.message


def response_error(
    resp: aiohttp.ClientResponse, body: bytes, address: str, public_address: str
) -> Exception:
    """The exception for the gateway at ``address`` answering ``resp`` (status >= 400)
    with ``body``; ``public_address`` is where a browser finds the hub's token page."""
    status = resp.status
    text = body.decode("utf-8", "replace").strip()
    server_msg = None
    try:
        server_msg = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        pass
    msg = server_msg or text or f"{status}: {resp.reason}"
    if status in (400, 404, 422):
        if status == 404 and server_msg is None:
            msg = (
                f"{msg} ({resp.method} {resp.url.path}); check that gateway.address "
                f"({address}) is a gateway's address and that the client and "
                "server versions are compatible"
            )
        return ValueError(msg)
    if status == 409:
        return GatewayClusterError(msg)
    if status in (401, 403):
        return GatewayAuthError(
            resp.request_info,
            resp.history,
            status=status,
            message=_auth_help(status, server_msg, address, public_address),
            headers=resp.headers,
        )
    if status >= 500:
        return GatewayServerError(msg)
    return aiohttp.ClientResponseError(
        resp.request_info, resp.history, status=status, message=msg, headers=resp.headers
    )


def _auth_help(status: int, server_msg: str | None, address: str, public_address: str) -> str:
    scope = f"access:services!service={service_name(address)}"
    page = token_page(public_address)
    said = f" (the server said: {server_msg})" if server_msg else ""
    if status == 403:
        return (
            f"The gateway at {address} refused this request{said}. If you expected "
            f"access, your token may lack the `{scope}` scope: create a token at {page} "
            "with that scope (or ask your administrator to grant it)."
        )
    return (
        f"The gateway at {address} did not accept your credentials{said}: the API "
        f"token is missing, invalid or expired, or lacks the `{scope}` scope. Create a "
        f"token at {page} and set it as JUPYTERHUB_API_TOKEN or in "
        "gateway.auth.kwargs.api_token (with gateway.auth.type: jupyterhub)."
    )


def warn_if_not_ok(reply: Any) -> None:
    """Warn (``GatewayWarning``) with the message of a scale or adapt answer that did not
    do all that was asked, e.g. one clamped to a limit."""
    if isinstance(reply, dict) and not reply.get("ok", True) and reply.get("msg"):
        warnings.warn(GatewayWarning(reply["msg"]), stacklevel=3)
