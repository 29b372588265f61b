"""The dashboard origin's URL template and the ticket/session book (pure logic)."""

from __future__ import annotations

import pytest

from hubgate.hub_service.dashboard_origin import DashboardOrigin
from hubgate.hub_service.dashboard_sessions import DashboardGrant, DashboardSessions


def test_per_cluster_origin() -> None:
    origin = DashboardOrigin.parse("https://{cluster}.dask.example.org")
    assert origin.per_cluster and origin.secure
    assert origin.origin_for("abc") == "https://abc.dask.example.org"
    assert origin.host_serves("abc.dask.example.org", "abc")
    assert origin.host_serves("ABC.dask.example.org:443", "abc")
    assert not origin.host_serves("def.dask.example.org", "abc")
    assert not origin.host_serves("abc.dask.example.org.evil.org", "abc")
    assert not origin.host_serves("x.abc.dask.example.org", "abc")


def test_single_origin_and_loopback_names() -> None:
    single = DashboardOrigin.parse("http://dask.example.org:8790/")
    assert not single.per_cluster and not single.secure
    assert single.origin_for("abc") == "http://dask.example.org:8790"
    assert single.host_serves("anything", "abc")
    local = DashboardOrigin.parse("http://{cluster}.localhost:8790")
    assert local.secure  # browsers keep Secure cookies on *.localhost
    assert local.origin_for("abc") == "http://abc.localhost:8790"


@pytest.mark.parametrize(
    "url",
    [
        "dask.example.org",
        "ftp://dask.example.org",
        "https://dask.example.org/dashboards",
        "https://dask.example.org/?x=1",
        "https://x.{cluster}.example.org",
        "https://{cluster}.{cluster}.example.org",
    ],
)
def test_bad_dashboard_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        DashboardOrigin.parse(url)


def grant(cluster: str = "a") -> DashboardGrant:
    return DashboardGrant(
        cluster=cluster, viewer="alice", admin=False, token="t", hub_origin="http://hub"
    )


def test_tickets_are_single_use_and_bound_to_their_cluster() -> None:
    now = [0.0]
    sessions = DashboardSessions(ticket_lifetime=60, session_lifetime=3600, clock=lambda: now[0])
    ticket = sessions.issue_ticket(grant("a"))
    assert sessions.redeem(ticket, "b") is None
    assert sessions.redeem(ticket, "a") is None  # spent by the refused attempt
    ticket = sessions.issue_ticket(grant("a"))
    redeemed = sessions.redeem(ticket, "a")
    assert redeemed is not None
    session_id, granted = redeemed
    assert granted == grant("a")
    assert sessions.redeem(ticket, "a") is None
    assert sessions.session(session_id, "a") == grant("a")
    assert sessions.session(session_id, "b") is None
    now[0] = 3601
    assert sessions.session(session_id, "a") is None


def test_tickets_expire() -> None:
    now = [0.0]
    sessions = DashboardSessions(ticket_lifetime=60, clock=lambda: now[0])
    ticket = sessions.issue_ticket(grant())
    now[0] = 61
    assert sessions.redeem(ticket, "a") is None
