"""A scheduler builds its Bokeh dashboard when the dashboard is first asked for.

distributed builds the dashboard's Bokeh application in ``Scheduler.__init__``: about
260 URL patterns, each compiled as a regular expression that starts with the cluster's
own prefix (``/clusters/<name>/...``), so no cache can share them between schedulers.
That was ~20 of the ~50 ms of CPU a forked scheduler takes to start, and most
clusters' dashboards are never opened. :func:`defer_dashboard` makes distributed's
``connect`` leave a rule in front of the scheduler's HTTP routes that builds the Bokeh
application, exactly as distributed would have, on the first request that reaches it.

That rule sits behind the dashboard secret's (``dashboard_guard.py``, installed after the
scheduler is constructed, at the front): a request without the secret is refused before
it can cost the scheduler the build. Until the first request the HTTP server (its port,
``/health``, the JSON routes) is there as before; after it, the dashboard is the one
distributed builds, with its periodic callbacks started on the scheduler's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tornado import httputil, routing, web

__all__ = ["defer_dashboard"]

logger = logging.getLogger("hubgate.runtime")

_DEFERRED = "__hubgate_deferred__"


class _BuildOnFirstRequest(routing.Matcher):
    """Never matches; the first request it sees builds the dashboard first. (It stays
    in the rules afterwards as a flag check: removing it from the list being walked
    would make the router skip the next rule.)"""

    def __init__(self, build: Callable[[], None]) -> None:
        self._build: Callable[[], None] | None = build

    @property
    def built(self) -> bool:
        return self._build is None

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        build, self._build = self._build, None
        if build is not None:
            try:
                build()
            except Exception:
                logger.exception("hubgate: the scheduler's dashboard could not be built")
        return None


def defer_dashboard() -> bool:
    """Make this process's schedulers build their Bokeh dashboard on its first request
    (idempotent); False when distributed's dashboard cannot be imported (bokeh
    missing: distributed then serves its plain routes only, as before)."""
    try:
        import distributed.dashboard.scheduler as dashboard
    except ImportError:
        return False
    build = dashboard.connect
    if getattr(build, _DEFERRED, False):
        return True

    def connect(
        application: web.Application, http_server: Any, scheduler: Any, prefix: str = ""
    ) -> None:
        def now() -> None:
            build(application, http_server, scheduler, prefix=prefix)

        router = application.default_router
        router.rules.insert(0, routing.Rule(_BuildOnFirstRequest(now), None))

    setattr(connect, _DEFERRED, True)
    dashboard.connect = connect
    return True
