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


#: The least an agent may send in one message. A scheduler runs its user's code, so its
#: agent is hostile input: tornado's default (10 MiB) would let it make the service parse
#: far more than the biggest real message, a hello listing every worker (about 150
#: bytes each, so this floor fits several thousand).
MAX_AGENT_MESSAGE = 1 << 20
BYTES_PER_WORKER = 512


class AgentSocket(WebSocketHandler):
    """Authenticated with the cluster's own token, never with a user's."""

    cluster: Cluster

    @property
    def max_message_size(self) -> int:
        # Larger messages close the connection (1009) before anything is parsed; room for
        # a hello of the largest cluster the service allows.
        most_workers = self.service.max_workers_per_cluster
        return max(MAX_AGENT_MESSAGE, most_workers * BYTES_PER_WORKER)

    @property
    def ping_interval(self) -> float | None:
        # The agents ping (scheduler_agent.PING_INTERVAL); pinging each of a thousand
        # agents as well doubled an idle service's websocket work for nothing: a dead
        # scheduler is found by the backend's poll, and its agent's reconnect replaces
        # a connection left half-open.
        return None

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
