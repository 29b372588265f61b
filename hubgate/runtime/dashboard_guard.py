"""The scheduler's side of dashboard access: only the service's proxy gets in.

Each cluster has a random dashboard secret (the service keeps it encrypted with the
cluster's other secrets and writes it to the scheduler's credentials folder as
``dashboard_secret``). The service's dashboard proxy sends it in the
``X-Hubgate-Dashboard-Secret`` header; :func:`require_dashboard_secret` puts a rule in
front of everything the scheduler's HTTP server routes (Bokeh pages, its websockets, the
JSON API, ``/health``) that answers 403 to any request without it. So a dashboard port
that the cluster network can reach (batch nodes, pods), or that other local users can
reach on loopback, opens for nobody but the proxy, and a cluster cannot send its
dashboard route to another cluster's dashboard (the secrets differ).

This module runs inside the scheduler and the service: it imports only tornado.
"""

from __future__ import annotations

import hmac
from typing import Any

from tornado import httputil, routing, web

__all__ = [
    "DASHBOARD_SECRET_FILE",
    "SECRET_HEADER",
    "dashboard_prefix",
    "require_dashboard_secret",
]

DASHBOARD_SECRET_FILE = "dashboard_secret"
SECRET_HEADER = "X-Hubgate-Dashboard-Secret"


def dashboard_prefix(cluster_name: str) -> str:
    """The path of a cluster's dashboard, on the scheduler and on the dashboard origin."""
    return f"/clusters/{cluster_name}"


class _LacksSecret(routing.Matcher):
    """Matches every request that does not carry the secret."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        sent = request.headers.get(SECRET_HEADER, "").encode()
        return None if hmac.compare_digest(sent, self._secret) else {}


class _Refuse(web.RequestHandler):
    """403 for every method, websocket upgrades included (refused before the upgrade)."""

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish("This dashboard opens only through the hubgate service.\n")


def require_dashboard_secret(application: web.Application, secret: str) -> None:
    """Make ``application`` (a scheduler's ``http_application``) refuse requests that do
    not carry ``secret``. Call it before the event loop serves a request."""
    if not secret:
        raise ValueError("the dashboard secret is empty")
    router = application.default_router
    rule = router.process_rule(routing.Rule(_LacksSecret(secret), _Refuse))
    router.rules.insert(0, rule)
