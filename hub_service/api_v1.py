"""dask-gateway's REST API, exactly as its official client (2026.3.0) expects it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .._version import __version__
from ..cluster_names import DISPLAY_NAME_OPTION, check_display_name
from ..options import OptionsError
from .cluster_config import ConfigError
from .cluster_settings import option_set_for, parse_options
from .errors import Forbidden, Invalid, ServiceError, report_unexpected
from .handlers_base import BaseHandler
from .model import ClusterStatus, v1_json_text

# How long a GET ?wait may hold the request open, as dask-gateway does.
LONG_POLL_SECONDS = 20.0
# The fields of scale and adapt bodies (both APIs); anything else is a typo.
SCALE_FIELDS = ("count",)
ADAPT_FIELDS = ("minimum", "maximum", "active")


def parse_statuses(text: str | None) -> set[ClusterStatus] | None:
    if not text:
        return None
    try:
        return {ClusterStatus.parse(part) for part in text.split(",") if part.strip()}
    except ValueError as exc:
        raise Invalid(str(exc)) from None


class HealthHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.write_json({"status": "pass"})


class VersionHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.write_json({"version": __version__})


class OptionsHandler(BaseHandler):
    async def get(self) -> None:
        option_set = await option_set_for(self.service.cluster_options, self.user)
        self.write_json({"cluster_options": option_set.spec()})


def display_name_from_request(value: Any, status: int = 400) -> str | None:
    """A request's display name, checked (hubgate/cluster_names.py); None: none given."""
    try:
        return check_display_name(value)
    except ValueError as exc:
        raise ServiceError(str(exc), status) from None


async def create_from_request(
    handler: BaseHandler, requested: Any, display_name: str | None = None
) -> Any:
    """Validate options, apply the handler and the service defaults, and create. A
    handler's result with a key nothing reads is the hub's mistake (``HubMisconfigured``,
    a 409), not the user's. ``display_name``: checked already, None for a default."""
    service = handler.service
    option_set = await option_set_for(service.cluster_options, handler.user)
    try:
        options, config_dict = await parse_options(option_set, requested, handler.user)
        config = service.cluster_config_for(config_dict, handler.user)
    except (OptionsError, ConfigError) as exc:
        raise Invalid(str(exc)) from None
    except ServiceError:
        raise  # HubMisconfigured: says what it is, and is logged already
    except Exception as exc:
        # A bug in the operator's options handler: not the user's doing, nor theirs to read.
        text = report_unexpected(exc, "applying this service's cluster options handler")
        raise ServiceError(text[0].upper() + text[1:], 500) from exc
    return await service.manager.create_cluster(handler.user, options, config, display_name)


class ClustersHandler(BaseHandler):
    def get(self) -> None:
        statuses = parse_statuses(self.get_argument("status", None))
        clusters = self.service.manager.visible_clusters(self.user, statuses)
        with_credentials = self.service.list_credentials
        # one JSON object made of the clusters' cached texts
        entries = (
            f"{json.dumps(c.name)}: {v1_json_text(c, credentials=with_credentials and self.owns(c))}"
            for c in clusters
        )
        self.write_json_text("{" + ", ".join(entries) + "}")

    async def post(self) -> None:
        body = self.json_body(allowed=("cluster_options",))
        requested = body.get("cluster_options")
        display_name = None
        if isinstance(requested, dict) and DISPLAY_NAME_OPTION in requested:
            # dask-gateway's client has no place for a name but the options; it shows
            # the text of a 422 (a ValueError), not of a 400
            requested = dict(requested)
            display_name = display_name_from_request(requested.pop(DISPLAY_NAME_OPTION), 422)
        cluster = await create_from_request(self, requested, display_name)
        self.write_json({"name": cluster.name}, status=201)


class ClusterHandler(BaseHandler):
    async def get(self, name: str) -> None:
        manager = self.service.manager
        cluster = manager.get_cluster(self.user, name)
        if self.get_argument("wait", None) is not None:
            if not self.owns(cluster):
                # dask-gateway's client connects with GET ?wait and would crash on a
                # report without credentials: refuse with a reason that it shows.
                raise Forbidden(
                    f"Cluster {name} belongs to {cluster.username}: as an admin you may "
                    "view, scale and stop it and open its dashboard, but not connect to "
                    "it (only its owner gets its credentials)"
                )
            # answer as soon as it leaves PENDING (or after 20 s, as dask-gateway does)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LONG_POLL_SECONDS
            while cluster.status is ClusterStatus.PENDING and loop.time() < deadline:
                await manager.wait_for_change(cluster, deadline - loop.time())
        self.write_json_text(v1_json_text(cluster, credentials=self.owns(cluster)))

    async def delete(self, name: str) -> None:
        manager = self.service.manager
        cluster = manager.clusters.get(name)
        if cluster is not None:
            cluster = manager.get_cluster(self.user, name, action="stop")
            manager._spawn(manager.stop_cluster(cluster, f"stopped by {self.user.name}"))
        self.set_status(204)
        self.finish()


async def scale_from_request(handler: BaseHandler, name: str) -> tuple[Any, bool, str | None]:
    """Both APIs' scale: ``(cluster, ok, msg)``."""
    manager = handler.service.manager
    cluster = manager.get_cluster(handler.user, name, action="scale")
    body = handler.json_body(allowed=SCALE_FIELDS)
    if "count" not in body:
        raise Invalid('Scale expects a JSON body like {"count": 4}')
    ok, msg = await manager.scale(cluster, body["count"], by=handler.user.name)
    return cluster, ok, msg


async def adapt_from_request(handler: BaseHandler, name: str) -> tuple[Any, bool, str | None]:
    """Both APIs' adapt: ``(cluster, ok, msg)``."""
    manager = handler.service.manager
    cluster = manager.get_cluster(handler.user, name, action="adapt")
    body = handler.json_body(allowed=ADAPT_FIELDS)
    ok, msg = await manager.adapt(
        cluster,
        body.get("minimum"),
        body.get("maximum"),
        body.get("active", True),
        by=handler.user.name,
    )
    return cluster, ok, msg


class ScaleHandler(BaseHandler):
    async def post(self, name: str) -> None:
        _, ok, msg = await scale_from_request(self, name)
        self.write_json({"ok": ok, "msg": msg})


class AdaptHandler(BaseHandler):
    async def post(self, name: str) -> None:
        _, ok, msg = await adapt_from_request(self, name)
        self.write_json({"ok": ok, "msg": msg})


def routes(prefix: str) -> list[tuple[str, type]]:
    return [
        (prefix + r"api/health", HealthHandler),
        (prefix + r"api/version", VersionHandler),
        (prefix + r"api/v1/options", OptionsHandler),
        (prefix + r"api/v1/clusters/", ClustersHandler),
        (prefix + r"api/v1/clusters/([^/]+)", ClusterHandler),
        (prefix + r"api/v1/clusters/([^/]+)/scale", ScaleHandler),
        (prefix + r"api/v1/clusters/([^/]+)/adapt", AdaptHandler),
    ]
