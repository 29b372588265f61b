"""Tickets and sessions that carry a viewer from the service's origin to a dashboard's.

The service's origin knows who the viewer is (JupyterHub's OAuth); the dashboard origin
deliberately shares no cookie with it. A **ticket** bridges the two: issued on the
service's origin to an authorised viewer for one cluster, it travels in one redirect,
lives for seconds and is redeemed once on the dashboard origin for a **session**, whose
id becomes the dashboard origin's own cookie.

Only hashes of tickets and session ids are kept (in memory: a restart of the service
asks viewers to come through the service's origin again, which is one redirect).
Pure bookkeeping with an injectable clock; no I/O.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DashboardGrant", "DashboardSessions"]

TICKET_LIFETIME = 60.0
SESSION_LIFETIME = 12 * 3600.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class DashboardGrant:
    """Who may view which cluster's dashboard, as decided on the service's origin.

    ``token`` is the viewer's hub token of that decision (``None`` when the viewer came
    with the service's own session cookie): with it, admin rights are re-checked with
    the hub while the session lasts. ``hub_origin`` is the origin the viewer came from,
    the only one allowed to embed the dashboard.
    """

    cluster: str
    viewer: str
    admin: bool
    token: str | None
    hub_origin: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class _Book:
    """Hashed keys to (expiry, grant), oldest first, bounded in size."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, DashboardGrant]] = OrderedDict()

    def add(self, grant: DashboardGrant, lifetime: float) -> str:
        now = self._clock()
        while self._entries:
            key, (expires, _) = next(iter(self._entries.items()))
            if expires > now and len(self._entries) < MAX_ENTRIES:
                break
            del self._entries[key]
        value = secrets.token_urlsafe(32)
        self._entries[_digest(value)] = (now + lifetime, grant)
        return value

    def get(self, value: str) -> DashboardGrant | None:
        entry = self._entries.get(_digest(value))
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[_digest(value)]
            return None
        return entry[1]

    def pop(self, value: str) -> DashboardGrant | None:
        grant = self.get(value)
        self._entries.pop(_digest(value), None)
        return grant

    def discard(self, value: str) -> None:
        self._entries.pop(_digest(value), None)


class DashboardSessions:
    """Issues single-use tickets and turns them into dashboard sessions."""

    def __init__(
        self,
        ticket_lifetime: float = TICKET_LIFETIME,
        session_lifetime: float = SESSION_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ticket_lifetime = ticket_lifetime
        self.session_lifetime = session_lifetime
        self._tickets = _Book(clock)
        self._sessions = _Book(clock)

    def issue_ticket(self, grant: DashboardGrant) -> str:
        return self._tickets.add(grant, self.ticket_lifetime)

    def redeem(self, ticket: str, cluster: str) -> tuple[str, DashboardGrant] | None:
        """A new session id and its grant, or ``None`` if the ticket is unknown, used,
        expired, or for another cluster (it is spent in every case)."""
        grant = self._tickets.pop(ticket)
        if grant is None or grant.cluster != cluster:
            return None
        return self._sessions.add(grant, self.session_lifetime), grant

    def session(self, session_id: str, cluster: str) -> DashboardGrant | None:
        grant = self._sessions.get(session_id)
        if grant is None or grant.cluster != cluster:
            return None
        return grant

    def end(self, session_id: str) -> None:
        self._sessions.discard(session_id)
