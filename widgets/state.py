"""A cluster's state as the widgets show it, read from whatever the caller has.

Sources, richest first: hubgate's Cluster JSON (``api/hubgate/clusters/<name>``, as a dict
or an object with the same attributes), a dask-gateway ``ClusterReport``, and a
``distributed`` ``scheduler_info`` dict for live worker counts. Also the escaped HTML and
plain-text renderings used when no widget frontend is available.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dask.utils import format_bytes

from ..cluster_names import DISPLAY_NAME_OPTION

# CLOSED: a ``distributed`` cluster (LocalCluster) after close().
FINAL_STATUSES = frozenset({"STOPPED", "FAILED", "CLOSED"})


def _get(source: Any, key: str, default: Any = None) -> Any:
    if isinstance(source, Mapping):
        return source.get(key, default)
    return getattr(source, key, default)


def _status_name(status: Any) -> str:
    if status is None:
        return "UNKNOWN"
    name = getattr(status, "name", status)  # enums (dask_gateway.ClusterStatus)
    return str(name).upper()


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _display_name(report: Any) -> str | None:
    """hubgate's display name: a field of its records and reports, else the v1
    options entry (a dask-gateway ClusterReport from a hubgate service)."""
    name = _get(report, "display_name")
    if not name:
        options = _get(report, "options")
        if isinstance(options, Mapping):
            name = options.get(DISPLAY_NAME_OPTION)
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class ClusterState:
    name: str  # the id
    status: str = "UNKNOWN"
    display_name: str | None = None
    reason: str | None = None
    workers_running: int | None = None
    workers_requested: int | None = None
    workers_pending: int | None = None
    threads: int | None = None
    memory: int | None = None
    cores: float | None = None
    adaptive_active: bool = False
    adaptive_minimum: int | None = None
    adaptive_maximum: int | None = None
    dashboard_link: str | None = None
    events: tuple[str, ...] = field(default_factory=tuple)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def title(self) -> str:
        """What to call it: the display name, else the id."""
        return self.display_name or self.name

    @classmethod
    def from_report(cls, report: Any) -> ClusterState:
        """From hubgate's Cluster JSON/object or a (hubgate or dask-gateway) ClusterReport."""
        link = _get(report, "dashboard_link")
        details = _get(report, "details")
        if isinstance(details, Mapping):
            # hubgate's ClusterReport keeps the full record; its link is already absolute.
            state = cls.from_report(details)
            return replace(
                state,
                dashboard_link=link or state.dashboard_link,
                display_name=state.display_name or _display_name(report),
            )
        workers = _get(report, "workers") or {}
        adaptive = _get(report, "adaptive") or {}
        events = _get(report, "events") or ()
        cores = _get(report, "cores")
        return cls(
            name=str(_get(report, "name", "")),
            display_name=_display_name(report),
            status=_status_name(_get(report, "status")),
            reason=_get(report, "reason"),
            workers_running=_int_or_none(_get(workers, "running")),
            workers_requested=_int_or_none(_get(workers, "requested")),
            workers_pending=_int_or_none(_get(workers, "pending")),
            threads=_int_or_none(_get(report, "threads")),
            memory=_int_or_none(_get(report, "memory")),
            cores=None if cores is None else float(cores),
            adaptive_active=bool(_get(adaptive, "active", False)),
            adaptive_minimum=_int_or_none(_get(adaptive, "minimum")),
            adaptive_maximum=_int_or_none(_get(adaptive, "maximum")),
            dashboard_link=link or _get(report, "dashboard_url"),
            events=tuple(str(_get(e, "message", e)) for e in events),
        )

    def with_scheduler_info(self, info: Mapping[str, Any] | None) -> ClusterState:
        """Live worker/thread/memory counts from a ``distributed`` scheduler_info."""
        if not info or "workers" not in info:
            return self
        workers = list(info["workers"].values())
        return replace(
            self,
            workers_running=len(workers),
            threads=sum(int(w.get("nthreads", 0)) for w in workers),
            memory=sum(int(w.get("memory_limit", 0) or 0) for w in workers),
        )


def format_memory(value: int | None) -> str:
    return "–" if value is None else format_bytes(value)


def format_count(value: int | float | None) -> str:
    if value is None:
        return "–"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def workers_text(state: ClusterState) -> str:
    running = format_count(state.workers_running)
    if state.workers_requested is not None and state.workers_requested != state.workers_running:
        return f"{running} of {state.workers_requested} requested"
    return running


def summary_rows(state: ClusterState) -> list[tuple[str, str]]:
    """(label, value) pairs shared by the widget, the HTML and the text renderings."""
    rows = [
        ("Status", state.status),
        ("Workers", workers_text(state)),
        ("Threads", format_count(state.threads)),
        ("Memory", format_memory(state.memory)),
    ]
    if state.adaptive_active:
        rows.append(
            (
                "Adaptive",
                f"{format_count(state.adaptive_minimum)} to {format_count(state.adaptive_maximum)} workers",
            )
        )
    return rows


def cluster_text(state: ClusterState) -> str:
    shown_id = f" ({state.name})" if state.display_name else ""
    lines = [f"Cluster {state.title}{shown_id}"]
    lines += [f"  {label}: {value}" for label, value in summary_rows(state)]
    if state.dashboard_link:
        lines.append(f"  Dashboard: {state.dashboard_link}")
    if state.status == "FAILED" and state.reason:
        lines.append(f"  Failed: {state.reason}")
    return "\n".join(lines)


def cluster_html(state: ClusterState) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><th style='text-align:left'>{esc(label)}</th><td>{esc(value)}</td></tr>"
        for label, value in summary_rows(state)
    )
    if state.dashboard_link:
        link = esc(state.dashboard_link, quote=True)
        rows += (
            "<tr><th style='text-align:left'>Dashboard</th>"
            f"<td><a href='{link}' target='_blank' rel='noopener'>{esc(state.dashboard_link)}</a></td></tr>"
        )
    failure = ""
    if state.status == "FAILED" and state.reason:
        failure = f"<p style='color:#b00020'><b>Failed:</b> {esc(state.reason)}</p>"
    return f"<div><h4>{title_html(state)}</h4><table>{rows}</table>{failure}</div>"


def title_html(state: ClusterState) -> str:
    """The title, "Cluster <display name>", with the id beside it in small grey text."""
    title = f"Cluster {html.escape(state.title)}"
    if state.display_name:
        title += f" <small style='color:#777;font-weight:normal'>{html.escape(state.name)}</small>"
    return title


def gateway_text(states: list[ClusterState]) -> str:
    if not states:
        return "No clusters"
    return "\n".join(cluster_text(s) for s in states)


def gateway_html(states: list[ClusterState]) -> str:
    if not states:
        return "<p>No clusters</p>"
    return "".join(cluster_html(s) for s in states)
