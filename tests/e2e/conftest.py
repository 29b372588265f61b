"""A hub for the operations tests (seconds-long timeouts), shared by their modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.hub_api import OPS_HUB_CONFIG, HubgateAPI
from tests.fixtures.hub import start_hub


@pytest.fixture(scope="session")
def ops_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    running = start_hub(tmp_path_factory.mktemp("ops-hub"), hubgate_config_extra=OPS_HUB_CONFIG)
    yield running
    running.stop()


@pytest.fixture
def alice(ops_hub: RunningHub) -> Iterator[HubgateAPI]:
    api = HubgateAPI(ops_hub, "alice")
    yield api
    api.stop_all()
