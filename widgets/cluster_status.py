"""What the cluster widget shows of a cluster's state: title, summary, start-up progress,
failure reason and dashboard link. Read-only; the controls are elsewhere."""

from __future__ import annotations

import html

import ipywidgets as ipw

from .state import ClusterState, summary_rows, title_html


def summary_html(state: ClusterState) -> str:
    cells = "".join(
        f"<td style='padding-right:1.5em'><small>{html.escape(label)}</small><br>"
        f"<b>{html.escape(value)}</b></td>"
        for label, value in summary_rows(state)
    )
    return f"<table><tr>{cells}</tr></table>"


class ClusterStatusView:
    """The status parts of a cluster widget; the widget places them in its own layout
    (the dashboard link sits beside its Shutdown button)."""

    def __init__(self) -> None:
        self.title = ipw.HTML()
        self.summary = ipw.HTML()
        self.progress = ipw.IntProgress(
            value=0, min=0, max=1, description="Starting", bar_style="info"
        )
        self.failure = ipw.HTML()
        self.dashboard = ipw.HTML()

    def show(self, state: ClusterState) -> None:
        self.title.value = f"<h3>{title_html(state)}</h3>"
        self.summary.value = summary_html(state)
        requested = state.workers_requested or 0
        starting = state.status == "PENDING" or (state.workers_running or 0) < requested
        self.progress.layout.display = "" if starting and not state.final else "none"
        self.progress.max = max(requested, 1)
        self.progress.value = min(state.workers_running or 0, self.progress.max)
        self.progress.description = "Starting" if state.status == "PENDING" else "Workers"
        if state.status == "FAILED":
            reason = state.reason or "no reason was given; see the cluster's logs"
            self.failure.value = (
                "<div style='border:1px solid #b00020;padding:6px;color:#b00020'>"
                f"<b>Cluster failed:</b> {html.escape(reason)}</div>"
            )
        else:
            self.failure.value = ""
        if state.dashboard_link and not state.final:
            link = html.escape(state.dashboard_link, quote=True)
            self.dashboard.value = f"<a href='{link}' target='_blank' rel='noopener'>Dashboard</a>"
        else:
            self.dashboard.value = ""
