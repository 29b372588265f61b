"""Who pings on an agent's websocket: the agents do, the service does not (with a
thousand clusters, the service pinging each agent too doubled its idle work)."""

from __future__ import annotations

from unittest import mock

from tornado.httputil import HTTPServerRequest
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from hubgate.hub_service.agent_socket import AgentSocket

SERVICE_SETTINGS = {"websocket_ping_interval": 30}  # what the service's app sets


def _handler(cls: type[WebSocketHandler]) -> WebSocketHandler:
    request = HTTPServerRequest(method="GET", uri="/api/agent/ws", connection=mock.Mock())
    return cls(Application(**SERVICE_SETTINGS), request)


def test_the_service_does_not_ping_agents() -> None:
    assert _handler(WebSocketHandler).ping_interval == 30  # the app's other sockets
    assert _handler(AgentSocket).ping_interval is None
