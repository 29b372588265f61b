"""How the client proves who it is to the gateway.

Same protocol and classes as dask-gateway's client: every request is first sent with
cookies only; on a 401 the auth object's ``pre_request`` supplies headers for one retry
and ``post_response`` checks the answer (Kerberos mutual authentication).
"""

from __future__ import annotations

import getpass
import importlib
import os
import re
from base64 import b64encode
from typing import Any

import dask.config

from .dask_config import format_template

__all__ = ["BasicAuth", "GatewayAuth", "JupyterHubAuth", "KerberosAuth", "get_auth"]


class GatewayAuth:
    """Base class: how to answer the gateway's 401."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def pre_request(self, resp: Any) -> tuple[dict[str, str], Any]:
        """Called with the 401 response; return ``(headers, context)`` for the retry."""
        return {}, None

    def post_response(self, resp: Any, context: Any = None) -> None:
        """Called with the retried request's response and the ``context`` from above."""


class BasicAuth(GatewayAuth):
    """HTTP Basic authentication (dask-gateway's SimpleAuthenticator)."""

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self.username = username if username is not None else getpass.getuser()
        self.password = password if password is not None else ""

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r})"

    def pre_request(self, resp: Any) -> tuple[dict[str, str], Any]:
        pair = f"{self.username}:{self.password}".encode("latin1")
        return {"Authorization": "Basic " + b64encode(pair).decode()}, None


class JupyterHubAuth(GatewayAuth):
    """A JupyterHub API token (from the argument, else ``$JUPYTERHUB_API_TOKEN``)."""

    def __init__(self, api_token: str | None = None) -> None:
        if not api_token:
            api_token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not api_token:
            raise ValueError(
                "No JupyterHub API token: pass JupyterHubAuth(api_token=...), set the "
                "JUPYTERHUB_API_TOKEN environment variable, or set gateway.auth.kwargs.api_token "
                "in your dask configuration. Outside the hub, create a token at "
                "https://<your hub>/hub/token."
            )
        self.api_token = api_token

    def __repr__(self) -> str:
        return "JupyterHubAuth(api_token=<hidden>)"

    def pre_request(self, resp: Any) -> tuple[dict[str, str], Any]:
        return {"Authorization": "jupyterhub " + self.api_token}, None


class KerberosAuth(GatewayAuth):
    """Kerberos (SPNEGO); needs the ``pykerberos`` package."""

    _negotiate = re.compile(r"(?:.*,)*\s*Negotiate\s*([^,]*),?", re.IGNORECASE)

    @staticmethod
    def _kerberos() -> Any:
        try:
            return importlib.import_module("kerberos")
        except ImportError:
            raise ImportError(
                "Kerberos authentication needs the pykerberos package: pip install pykerberos"
            ) from None

    def pre_request(self, resp: Any) -> tuple[dict[str, str], Any]:
        kerberos = self._kerberos()
        _, context = kerberos.authGSSClientInit(
            f"HTTP@{resp.url.host}",
            gssflags=kerberos.GSS_C_MUTUAL_FLAG | kerberos.GSS_C_SEQUENCE_FLAG,
        )
        kerberos.authGSSClientStep(context, "")
        token = kerberos.authGSSClientResponse(context)
        return {"Authorization": "Negotiate " + token}, context

    def post_response(self, resp: Any, context: Any = None) -> None:
        kerberos = self._kerberos()
        match = self._negotiate.search(resp.headers.get("www-authenticate", ""))
        if not match or not match.group(1):
            raise PermissionError(
                "Kerberos negotiation with the gateway failed: the server did not "
                "authenticate itself; check that you have a ticket (klist)"
            )
        kerberos.authGSSClientStep(context, match.group(1))


_BY_NAME: dict[str, type[GatewayAuth]] = {
    "basic": BasicAuth,
    "jupyterhub": JupyterHubAuth,
    "kerberos": KerberosAuth,
}


def _import_auth_class(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(
            f"Unknown auth type {path!r}; use one of {', '.join(_BY_NAME)} "
            "or a dotted path to a GatewayAuth subclass"
        )
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"Cannot import the auth class {path!r}: {exc}") from exc


def get_auth(auth: GatewayAuth | str | type | None = None) -> GatewayAuth:
    """A ``GatewayAuth`` instance for ``auth`` (instance, name, dotted path or class),
    or from ``gateway.auth.type``/``gateway.auth.kwargs`` in the dask config.

    The kwargs come from the config in every case but an instance, and their string
    values are filled from the environment (``api_token: "{MY_HUB_TOKEN}"``).
    """
    if isinstance(auth, GatewayAuth):
        return auth
    if auth is None:
        auth = dask.config.get("gateway.auth.type", None) or "basic"
    if isinstance(auth, str):
        auth = _BY_NAME.get(auth.lower()) or _import_auth_class(auth)
    if not callable(auth):
        raise TypeError(f"Unknown auth value {auth!r}; use basic, jupyterhub or kerberos")
    kwargs = dask.config.get("gateway.auth.kwargs", None) or {}
    kwargs = {k: format_template(v, f"gateway.auth.kwargs.{k}") for k, v in kwargs.items()}
    instance = auth(**kwargs)
    if not isinstance(instance, GatewayAuth):
        raise TypeError(f"auth must be a GatewayAuth instance, got {instance!r}")
    return instance
