"""hubgate's own JSON API: richer views for hubgate's client, widgets, lab extension and
admin page (documented in docs/internals.md and api/openapi.json)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .api_v1 import (
    adapt_from_request,
    create_from_request,
    display_name_from_request,
    parse_statuses,
    scale_from_request,
)
from .cluster_settings import option_set_for
from .dashboard_plots import fetch_plots
from .direct_address import direct_scheduler_address
from .errors import Conflict, Invalid
from .handlers_base import BaseHandler
from .model import Cluster, ClusterStatus, to_rich_json

MAX_WAIT_SECONDS = 60.0


def check_lease_seconds(seconds: Any) -> None:
    """The lease rule of ``ClusterManager.renew_lease``, checked before a cluster exists."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise Invalid(f"lease_seconds must be a number of seconds >= 0, got {seconds!r}")
    if seconds > 3600:
        raise Invalid("A lease may last at most 3600 seconds; renew it more often")


class HubgateHandler(BaseHandler):
    def rich(self, cluster: Cluster) -> dict[str, Any]:
        service = self.service
        return to_rich_json(
            cluster,
            service_prefix=service.service_prefix,
            proxy_address=service.public_proxy_address,
            direct_address=direct_scheduler_address(
                cluster,
                self.user.name,
                service.direct_connect_host if service.direct_connect else "",
            ),
        )


class WhoAmIHandler(HubgateHandler):
    def get(self) -> None:
        self.write_json(
            {"name": self.user.name, "admin": self.user.admin, "groups": list(self.user.groups)}
        )


class RichOptionsHandler(HubgateHandler):
    async def get(self) -> None:
        option_set = await option_set_for(self.service.cluster_options, self.user)
        self.write_json({"fields": option_set.rich_spec(), **option_set.form_schema()})


class RichClustersHandler(HubgateHandler):
    def get(self) -> None:
        statuses = parse_statuses(self.get_argument("status", None))
        all_users = self.get_argument("all_users", "0").lower() in ("1", "true", "yes")
        clusters = self.service.manager.visible_clusters(self.user, statuses, all_users)
        self.write_json({"clusters": [self.rich(c) for c in clusters]})

    async def post(self) -> None:
        body = self.json_body(
            allowed=("options", "display_name", "shutdown_on_close", "lease_seconds")
        )
        # Check everything before creating: a refused request must leave no cluster.
        if not isinstance(body.get("shutdown_on_close", True), bool):
            raise Invalid(
                f"shutdown_on_close must be true or false, got {body['shutdown_on_close']!r}"
            )
        lease = body.get("lease_seconds")
        if lease is not None:
            check_lease_seconds(lease)
        display_name = display_name_from_request(body.get("display_name"))
        cluster = await create_from_request(self, body.get("options"), display_name)
        if lease is not None:
            self.service.manager.renew_lease(cluster, lease)
        self.write_json(self.rich(cluster), status=201)


class RichClusterHandler(HubgateHandler):
    async def get(self, name: str) -> None:
        manager = self.service.manager
        cluster = manager.get_cluster(self.user, name)
        wait = self.get_argument("wait", None)
        if wait is not None:
            try:
                seconds = min(float(wait or MAX_WAIT_SECONDS), MAX_WAIT_SECONDS)
            except ValueError:
                raise Invalid(f"wait must be a number of seconds, got {wait!r}") from None
            if cluster.status is ClusterStatus.PENDING:
                await manager.wait_for_change(cluster, seconds)
        self.write_json(self.rich(cluster))

    async def delete(self, name: str) -> None:
        manager = self.service.manager
        cluster = manager.get_cluster(self.user, name, action="stop")
        if cluster.status.final:
            self.write_json(self.rich(cluster), status=200)
            return
        manager._spawn(manager.stop_cluster(cluster, f"stopped by {self.user.name}"))
        self.write_json(self.rich(cluster), status=202)


class RichScaleHandler(HubgateHandler):
    async def post(self, name: str) -> None:
        cluster, ok, msg = await scale_from_request(self, name)
        self.write_json({"ok": ok, "msg": msg, "cluster": self.rich(cluster)})


class RichAdaptHandler(HubgateHandler):
    async def post(self, name: str) -> None:
        cluster, ok, msg = await adapt_from_request(self, name)
        self.write_json({"ok": ok, "msg": msg, "cluster": self.rich(cluster)})


class LeaseHandler(HubgateHandler):
    def post(self, name: str) -> None:
        manager = self.service.manager
        cluster = manager.get_cluster(self.user, name, action="renew the lease of")
        body = self.json_body(allowed=("seconds",))
        manager.renew_lease(cluster, body.get("seconds", 60))
        self.write_json({"lease_expires": self.rich(cluster)["lease_expires"]})


class LogsHandler(HubgateHandler):
    async def get(self, name: str) -> None:
        manager = self.service.manager
        cluster = manager.get_cluster(self.user, name, action="read the logs of")
        try:
            lines = int(self.get_argument("lines", "100"))
        except ValueError:
            raise Invalid("lines must be an integer") from None
        if not 1 <= lines <= 10000:
            raise Invalid("lines must be between 1 and 10000")
        self.write_json(await manager.logs(cluster, lines))


class PlotsHandler(HubgateHandler):
    """The dashboard plots the cluster's scheduler offers (``dashboard_plots.py``)."""

    async def get(self, name: str) -> None:
        cluster = self.service.manager.get_cluster(self.user, name, action="list the plots of")
        if cluster.status is not ClusterStatus.RUNNING or not cluster.dashboard_address:
            raise Conflict(
                f"Cluster {name} is {cluster.status.value}: only a running cluster has "
                "dashboard plots; list them once it is running"
            )
        plots = await fetch_plots(cluster.name, cluster.dashboard_address, cluster.dashboard_secret)
        self.write_json({"plots": [plot.to_json() for plot in plots]})


class OpenAPIHandler(BaseHandler):
    public = True

    def get(self) -> None:
        text = resources.files("hubgate.hub_service").joinpath("openapi.json").read_text()
        self.write_json(json.loads(text))


def routes(prefix: str) -> list[tuple[str, type]]:
    api = prefix + "api/hubgate/"
    return [
        (api + "whoami", WhoAmIHandler),
        (api + "options", RichOptionsHandler),
        (api + "clusters/?", RichClustersHandler),
        (api + "clusters/([^/]+)", RichClusterHandler),
        (api + "clusters/([^/]+)/scale", RichScaleHandler),
        (api + "clusters/([^/]+)/adapt", RichAdaptHandler),
        (api + "clusters/([^/]+)/lease", LeaseHandler),
        (api + "clusters/([^/]+)/logs", LogsHandler),
        (api + "clusters/([^/]+)/plots", PlotsHandler),
        (prefix + "api/openapi.json", OpenAPIHandler),
    ]
