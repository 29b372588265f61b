"""The dashboard plots a cluster's scheduler offers, for the lab sidebar.

distributed's dashboard serves ``individual-plots.json``: a map of plot titles to paths
(``{"Individual Task Stream": "/individual-task-stream", ...}``). The service fetches it
from the scheduler the way the dashboard proxy does (its address, the cluster's dashboard
secret, the cluster's path prefix), so the browser needs no dashboard session to list
the plots and the sidebar opens each one through the usual authenticated dashboard link.

The scheduler runs the cluster owner's code, so its answer is hostile: it is read up to
:data:`MAX_BODY` bytes, must be a JSON object, and only entries whose title is short
text and whose path is a plain relative page under the dashboard are kept, at most
:data:`MAX_PLOTS` of them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..runtime.dashboard_guard import SECRET_HEADER, dashboard_prefix
from .errors import ServiceError

__all__ = ["MAX_BODY", "MAX_PLOTS", "DashboardPlot", "fetch_plots", "parse_plots"]

MAX_BODY = 256 * 1024
MAX_PLOTS = 200
MAX_TITLE = 100
MAX_PATH = 200
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0
PLOTS_PAGE = "individual-plots.json"
# Path segments of letters, digits and - _ . (never "." or ".." alone): a page of the
# dashboard, never a query, a fragment, another host or a way up.
_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class DashboardPlot:
    """One plot: its title and its path relative to the cluster's dashboard root."""

    title: str
    path: str

    def to_json(self) -> dict[str, str]:
        return {"title": self.title, "path": self.path}


class DashboardPlotsError(ServiceError):
    """The scheduler's dashboard did not give a usable list (502: not the caller's fault,
    but the message says what to try)."""

    status_code = 502


def _clean_title(title: Any) -> str | None:
    if not isinstance(title, str):
        return None
    # Runs of white space become one space; other control and format characters (bidi
    # overrides) would spoof the list.
    text = " ".join(title.split())
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    if not text or len(text) > MAX_TITLE:
        return None
    return text


def _clean_path(path: Any, prefix: str) -> str | None:
    if not isinstance(path, str) or len(path) > MAX_PATH:
        return None
    # distributed gives paths from the dashboard root; accept them with its prefix too.
    if path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    segments = path.removeprefix("/").split("/")
    if not all(_SEGMENT.match(segment) for segment in segments):
        return None
    return "/".join(segments)


def parse_plots(body: bytes, prefix: str) -> list[DashboardPlot]:
    """The usable entries of an ``individual-plots.json`` answer, sorted by title.

    ``prefix`` is the dashboard's path prefix (``/clusters/<name>``). Raises
    :class:`DashboardPlotsError` when the answer is not a JSON object; drops entries that
    are not a short title and a plain dashboard path, and duplicates of a path.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise DashboardPlotsError(
            "The cluster's dashboard did not answer with a list of plots (a JSON object); "
            "its scheduler may run an old or modified distributed"
        )
    plots: dict[str, DashboardPlot] = {}
    for title, path in data.items():
        clean_title, clean_path = _clean_title(title), _clean_path(path, prefix)
        if clean_title is None or clean_path is None or clean_path in plots:
            continue
        plots[clean_path] = DashboardPlot(clean_title, clean_path)
        if len(plots) == MAX_PLOTS:
            break
    return sorted(plots.values(), key=lambda p: (p.title.lower(), p.path))


async def fetch_plots(cluster_name: str, address: str, secret: str) -> list[DashboardPlot]:
    """Ask the scheduler's dashboard at ``address`` (``http://host:port``) for its plots."""
    prefix = dashboard_prefix(cluster_name)
    request = HTTPRequest(
        f"{address.rstrip('/')}{prefix}/{PLOTS_PAGE}",
        headers={SECRET_HEADER: secret, "Accept": "application/json"},
        follow_redirects=False,
        connect_timeout=CONNECT_TIMEOUT,
        request_timeout=REQUEST_TIMEOUT,
    )
    # A client of its own: the body limit is per client, and no other request needs it.
    client = AsyncHTTPClient(force_instance=True, max_body_size=MAX_BODY)
    try:
        response = await client.fetch(request, raise_error=False)
    except (OSError, HTTPClientError) as exc:
        raise DashboardPlotsError(
            f"The dashboard of cluster {cluster_name} is not answering, or sent a plot "
            f"list over {MAX_BODY // 1024} KiB; if it is starting or shutting down, try "
            "again in a moment"
        ) from exc
    finally:
        client.close()
    if response.code != 200:
        raise DashboardPlotsError(
            f"The dashboard of cluster {cluster_name} answered {response.code} for its "
            "plot list; its scheduler may run an old or modified distributed"
        )
    return parse_plots(response.body, prefix)
