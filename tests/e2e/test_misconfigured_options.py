"""An options handler that the service can only check per request (the operator's own
code) returns a key nothing reads, or a cluster_options callable returns no option set:
the user reads that the hub is misconfigured (a 409, which both clients raise as
GatewayClusterError), nothing of its configuration, and nothing is created; the operator
reads the key and the closest valid one in the service log. End to end through a real
JupyterHub, with the official dask-gateway client and hubgate's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hubgate.hub_service.cluster_settings import MISCONFIGURED
from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.hub_api import HubgateAPI, checked, run_client, service_log, values
from tests.e2e.snippets import attempt
from tests.fixtures.hub import start_hub

pytestmark = pytest.mark.slow

# alice's handler has a typo (max_worker for max_workers: without the check it would
# quietly lift her cap); bob's option set is not one at all.
MISCONFIGURED_OPTIONS = """
from hubgate.options import OptionSet, standard_handler, worker_cores_field


def capped_handler(options):
    config = standard_handler(options)
    config["max_worker"] = 2
    return config


def options_for(user):
    if user.name == "bob":
        return {"worker_cores": 1}
    return OptionSet(worker_cores_field(default=1, max=2), handler=capped_handler)


c.HubgateService.cluster_options = options_for
"""

CREATE = "new_cluster(shutdown_on_close=False)"
OFFICIAL_CLIENT = attempt("dask_gateway", CREATE)
HUBGATE_CLIENT = attempt("hubgate", CREATE)
OFFICIAL_OPTIONS = attempt("dask_gateway", "cluster_options(use_local_defaults=False)")


@pytest.fixture(scope="module")
def misconfigured_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    running = start_hub(
        tmp_path_factory.mktemp("misconfigured-hub"), hubgate_config_extra=MISCONFIGURED_OPTIONS
    )
    yield running
    running.stop()


def test_a_handler_key_nothing_reads_refuses_the_cluster_and_logs_the_key(
    misconfigured_hub: RunningHub, tmp_path: Path
) -> None:
    for client in (OFFICIAL_CLIENT, HUBGATE_CLIENT):
        out = checked(run_client(misconfigured_hub, "alice", client, tmp_path))
        [error] = values(out, "ERROR")
        assert error == f"GatewayClusterError {MISCONFIGURED}", error
    # nothing was created, and the cap was not lifted quietly
    api = HubgateAPI(misconfigured_hub, "alice")
    assert api.ok("GET", "clusters?status=pending,running,stopped,failed") == {"clusters": []}
    status, body = api.call("POST", "clusters", {"options": {}})
    assert (status, body) == (409, {"error": MISCONFIGURED})
    logged = [
        line
        for line in service_log(misconfigured_hub).splitlines()
        if "HubgateService.cluster_options is misconfigured" in line and "for alice" in line
    ]
    # one line per refused request (two clients and the API), each with the key
    assert len(logged) == 3, logged
    assert all("'max_worker' (did you mean 'max_workers'?)" in line for line in logged), logged


def test_a_callable_that_returns_no_option_set_is_the_hubs_mistake(
    misconfigured_hub: RunningHub, tmp_path: Path
) -> None:
    out = checked(run_client(misconfigured_hub, "bob", OFFICIAL_OPTIONS, tmp_path))
    assert values(out, "ERROR") == [f"GatewayClusterError {MISCONFIGURED}"], out
    log = service_log(misconfigured_hub)
    assert "misconfigured (for bob): The cluster_options callable" in log
    assert "must return an OptionSet, got dict" in log
