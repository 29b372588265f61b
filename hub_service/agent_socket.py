"""The websocket each scheduler agent holds open to the service."""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from tornado.web import HTTPError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .model import Cluster

if TYPE_CHECKING:
    from .app import HubgateService

log = logging.getLogger("hubgate.agent")


class AgentSocket(WebSocketHandler):
    """Authenticated with the cluster's own token, never with a user's."""

    cluster: Cluster

    @property
    def service(self) -> HubgateService:
        return self.settings["hubgate_service"]

    def prepare(self) -> None:
        name = self.get_argument("cluster", "")
        cluster = self.service.manager.clusters.get(name)
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if (
            cluster is None
            or scheme.lower() != "token"
            or not hmac.compare_digest(token.strip().encode(), cluster.token.encode())
        ):
            raise HTTPError(403, "Unknown cluster or wrong cluster token")
        if cluster.status.final:
            raise HTTPError(410, f"Cluster {name} has stopped")
        self.cluster = cluster

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.service.manager.agent_connected(self.cluster, self)

    async def on_message(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            log.warning("Cluster %s sent a message that is not JSON", self.cluster.name)
            return
        if isinstance(data, dict):
            await self.service.manager.on_agent_message(self.cluster, data)

    def on_close(self) -> None:
        self.service.manager.agent_disconnected(self.cluster, self)

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.write_message(json.dumps(message))
        except WebSocketClosedError:
            log.info("Cluster %s: agent gone before %s", self.cluster.name, message.get("op"))

    def check_origin(self, origin: str) -> bool:
        # agents are programs, not browsers; the token is the credential
        return True
