"""What the gateway says about clusters: ``ClusterStatus`` and ``ClusterReport``, read
from dask-gateway's v1 cluster JSON or from hubgate's richer cluster record."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from ..cluster_names import DISPLAY_NAME_OPTION
from .comm import GatewaySecurity

__all__ = ["ClusterReport", "ClusterStatus", "status_list"]


class ClusterStatus(enum.IntEnum):
    """A cluster's status, as the gateway reports it."""

    PENDING = 1
    RUNNING = 2
    STOPPING = 3
    STOPPED = 4
    FAILED = 5

    @classmethod
    def _create(cls, value: ClusterStatus | str) -> ClusterStatus:
        return value if isinstance(value, cls) else cls.from_name(value)

    @classmethod
    def from_name(cls, name: str) -> ClusterStatus:
        try:
            return cls[str(name).upper()]
        except KeyError:
            choices = ", ".join(s.name.lower() for s in cls)
            raise ValueError(
                f"{name!r} is not a valid ClusterStatus; use one of {choices}"
            ) from None


def status_list(status: Any) -> list[ClusterStatus]:
    """``None``, a status (or its name) or several, as a list of ``ClusterStatus``."""
    if status is None:
        return []
    if isinstance(status, str | ClusterStatus):
        return [ClusterStatus._create(status)]
    return [ClusterStatus._create(s) for s in status]


def _ms_to_datetime(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000)


def _iso_to_datetime(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class ClusterReport:
    """A report on a cluster's state.

    ``name`` is the cluster's id; ``display_name`` what people call it (a hubgate
    service's name, given at creation or picked by the service; None from a plain
    dask-gateway). ``options`` are the cluster's options only: the v1 API's
    ``hubgate:display_name`` entry becomes ``display_name``.

    ``owner`` and ``details`` (the full hubgate record: workers, resources, reason,
    events) are set only for reports from a hubgate service's own API.

    ``tls_cert``/``tls_key`` (and so ``security``) are None in reports from
    ``list_clusters()`` of a hubgate service (unless its ``list_credentials`` is on):
    ``connect()`` and ``get_cluster()`` get them from the cluster's own answer.
    """

    __slots__ = (
        "dashboard_link",
        "details",
        "display_name",
        "name",
        "options",
        "owner",
        "scheduler_address",
        "start_time",
        "status",
        "stop_time",
        "tls_cert",
        "tls_key",
    )

    def __init__(
        self,
        name: str,
        options: dict[str, Any],
        status: ClusterStatus,
        scheduler_address: str | None,
        dashboard_link: str | None,
        start_time: datetime | None,
        stop_time: datetime | None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        owner: str | None = None,
        details: dict[str, Any] | None = None,
        display_name: str | None = None,
    ) -> None:
        self.name = name
        self.display_name = display_name
        self.options = options
        self.status = status
        self.scheduler_address = scheduler_address
        self.dashboard_link = dashboard_link
        self.start_time = start_time
        self.stop_time = stop_time
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.owner = owner
        self.details = details

    def __repr__(self) -> str:
        shown = f", display_name={self.display_name}" if self.display_name else ""
        return f"ClusterReport<name={self.name}{shown}, status={self.status.name}>"

    @property
    def security(self) -> GatewaySecurity | None:
        """TLS credentials for connecting to the scheduler, when the report has them."""
        if self.tls_key is None or self.tls_cert is None:
            return None
        return GatewaySecurity(tls_key=self.tls_key, tls_cert=self.tls_cert)

    @classmethod
    def _from_json(
        cls, public_address: str, proxy_address: str, msg: dict[str, Any]
    ) -> ClusterReport:
        """From the v1 API's cluster JSON (unknown keys are ignored)."""
        name = msg["name"]
        status = ClusterStatus._create(msg["status"])
        route = msg.get("dashboard_route")
        options = dict(msg.get("options") or {})
        display_name = options.pop(DISPLAY_NAME_OPTION, None)
        return cls(
            name=name,
            display_name=display_name if isinstance(display_name, str) else None,
            options=options,
            status=status,
            scheduler_address=f"{proxy_address}/{name}"
            if status is ClusterStatus.RUNNING
            else None,
            dashboard_link=f"{public_address}{route}" if route else None,
            start_time=_ms_to_datetime(msg.get("start_time")),
            stop_time=_ms_to_datetime(msg.get("stop_time")),
            tls_cert=msg.get("tls_cert"),
            tls_key=msg.get("tls_key"),
        )

    @classmethod
    def _from_hubgate(
        cls, public_address: str, proxy_address: str, msg: dict[str, Any]
    ) -> ClusterReport:
        """From hubgate's own cluster record (``api/hubgate/clusters``)."""
        name = msg["name"]
        status = ClusterStatus._create(msg["status"])
        url = msg.get("dashboard_url")
        if url and url.startswith("/"):
            # An absolute path under the hub: put it on the public address's host.
            parsed = urlparse(public_address)
            url = f"{parsed.scheme}://{parsed.netloc}{url}"
        return cls(
            name=name,
            display_name=msg.get("display_name") or None,
            options=msg.get("options") or {},
            status=status,
            scheduler_address=f"{proxy_address}/{name}"
            if status is ClusterStatus.RUNNING
            else None,
            dashboard_link=url or None,
            start_time=_iso_to_datetime(msg.get("started") or msg.get("created")),
            stop_time=_iso_to_datetime(msg.get("stopped")),
            owner=msg.get("owner"),
            details=msg,
        )
