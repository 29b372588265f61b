"""A backend with a bug: users read what failed and an error id, never the exception's
text; the service log has the traceback under that id. End to end through a real
JupyterHub, with hubgate's client and the official dask-gateway client.

The service runs a local backend that fails on purpose, defined in its configuration:
its ``start`` and (for bob) ``check_user`` raise exceptions whose text holds what a
user must never see (a password, another user's path)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.hub_api import HubgateAPI, checked, run_client, service_log, values
from tests.e2e.snippets import attempt
from tests.fixtures.hub import start_hub

pytestmark = pytest.mark.slow

SECRET = "hunter2"
OTHER_USERS_PATH = "/home/carol/.ssh/id_ed25519"

FAULTY_BACKEND_CONFIG = f"""
from hubgate.spawners.local import LocalBackend


class FaultInjectingLocalBackend(LocalBackend):
    \"\"\"The local backend with two bugs that leak internals in their messages.\"\"\"

    async def check_user(self, username):
        if username == "bob":
            raise RuntimeError("LDAP bind failed with password {SECRET}")
        await super().check_user(username)

    async def start(self, spec):
        raise KeyError("{OTHER_USERS_PATH} (token {SECRET})")


c.HubgateService.backend_class = FaultInjectingLocalBackend
"""

ERROR_ID = re.compile(r"error id ([0-9a-f]{8})")

HUBGATE_CLIENT = attempt("hubgate", "new_cluster(shutdown_on_close=False)")
OFFICIAL_CLIENT = attempt("dask_gateway", "new_cluster()")


@pytest.fixture(scope="module")
def faulty_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    running = start_hub(
        tmp_path_factory.mktemp("faulty-hub"), hubgate_config_extra=FAULTY_BACKEND_CONFIG
    )
    yield running
    running.stop()


def _logged_once(hub: RunningHub, error_id: str, what: str) -> str:
    """What the log has after its one record of ``error_id`` (the traceback first; the
    hub's own lines may come between, as both processes write to the same file)."""
    lines = service_log(hub).splitlines()
    marks = [i for i, line in enumerate(lines) if f"(error id {error_id})" in line]
    assert len(marks) == 1, [lines[i] for i in marks]
    assert what in lines[marks[0]], lines[marks[0]]
    following = "\n".join(lines[marks[0] + 1 :])
    assert "Traceback (most recent call last):" in following, following[:2000]
    return following


def test_a_failed_start_shows_an_id_and_the_log_has_the_traceback(
    faulty_hub: RunningHub, tmp_path: Path
) -> None:
    out = checked(run_client(faulty_hub, "alice", HUBGATE_CLIENT, tmp_path))
    [error] = values(out, "ERROR")
    kind, error = error.split(" ", 1)
    assert kind == "GatewayClusterError", error
    assert SECRET not in error and OTHER_USERS_PATH not in error and "KeyError" not in error
    assert "The scheduler could not be started: the service hit an unexpected error" in error
    assert "an administrator can find the details in the service log" in error
    [error_id] = ERROR_ID.findall(error)

    # the same reason in the cluster's record, for every client and the clusters page
    api = HubgateAPI(faulty_hub, "alice")
    [record] = api.ok("GET", "clusters?status=failed")["clusters"]
    assert record["status"] == "FAILED"
    assert f"error id {error_id}" in record["reason"]
    assert SECRET not in str(record)

    traceback = _logged_once(
        faulty_hub, error_id, f"while starting the scheduler of cluster {record['name']}"
    )
    assert "FaultInjectingLocalBackend" not in error
    assert f"KeyError: '{OTHER_USERS_PATH} (token {SECRET})'" in traceback


def test_an_unexpected_error_in_a_request_reaches_the_official_client_with_its_id(
    faulty_hub: RunningHub, tmp_path: Path
) -> None:
    out = checked(run_client(faulty_hub, "bob", OFFICIAL_CLIENT, tmp_path))
    [error] = values(out, "ERROR")
    kind, message = error.split(" ", 1)
    # dask-gateway's client raises GatewayServerError with the body's message on a 500
    assert kind == "GatewayServerError", error
    assert message.startswith("The service hit an unexpected error while handling this request")
    assert SECRET not in message and "LDAP" not in message and "RuntimeError" not in message
    [error_id] = ERROR_ID.findall(message)
    traceback = _logged_once(faulty_hub, error_id, "POST /services/dask-gateway/api/v1/clusters")
    assert f"RuntimeError: LDAP bind failed with password {SECRET}" in traceback
    # nothing was created for bob
    assert HubgateAPI(faulty_hub, "bob").ok("GET", "clusters?status=pending,running,failed") == {
        "clusters": []
    }
