"""The scheduler agent's channel over TLS (issue #10, item 9): with a wss:// agent_url
behind a TLS front end signed by a private CA, schedulers trust that CA from
``agent_ca_file`` and report through it; a certificate they cannot verify is refused
(the agent sends its cluster's secret token, so it never skips the check)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from hubgate.runtime.scheduler_agent import SchedulerAgent
from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.service_api import ServiceApi
from tests.e2e.tls_terminator import TlsTerminator, make_ca_and_server_cert

pytestmark = pytest.mark.slow


async def _connect(url: str, ca_file: str | None) -> None:
    agent = SchedulerAgent("no-such-cluster", url=url, token="not-a-cluster-token", ca_file=ca_file)
    conn = await agent._connect()
    conn.close()


def test_schedulers_report_over_verified_tls(
    hub_factory: Callable[..., RunningHub], tmp_path: Path
) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    front = TlsTerminator(cert, key)
    try:
        url = f"wss://127.0.0.1:{front.port}/services/dask-gateway/api/agent/ws"
        hub = hub_factory(
            hubgate_config_extra=(
                f"c.HubgateService.agent_url = {url!r}\n"
                f"c.HubgateService.agent_ca_file = {str(ca)!r}\n"
            )
        )
        front.target = ("127.0.0.1", hub.settings.service_port)
        api = ServiceApi(hub)
        name = api.create_cluster("alice")["name"]
        try:
            # RUNNING and the worker's arrival are what the agent reports.
            api.ok("POST", f"/api/hubgate/clusters/{name}/scale", {"count": 1}, user="alice")
            api.wait_running(name, "alice", workers=1)
            assert front.handshakes >= 1
        finally:
            api.stop_and_wait(name)

        # Without the CA the certificate is refused before anything is sent...
        handshakes = front.handshakes
        with pytest.raises(ssl.SSLCertVerificationError):
            asyncio.run(_connect(url, None))
        assert front.handshakes == handshakes
        # ...with it the agent reaches the service, which refuses the made-up token.
        with pytest.raises(HTTPClientError) as refused:
            asyncio.run(_connect(url, str(ca)))
        assert refused.value.code in (401, 403, 404), refused.value
        assert front.handshakes == handshakes + 1
    finally:
        front.close()
