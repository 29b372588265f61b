"""Clusters that fail explain themselves: the reason, with the last log lines, in the
cluster's record and in hubgate's client's error, and the logs stay readable after the
cluster stopped. End to end against a real JupyterHub and real processes."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import pytest

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.hub_api import HubgateAPI, checked, run_client, values

pytestmark = pytest.mark.slow


def _final(record: dict) -> bool:
    return record["status"] in ("STOPPED", "FAILED")


NEW_CLUSTER_EXPECTING_FAILURE = """
from hubgate import Gateway, GatewayClusterError
try:
    Gateway().new_cluster(**{options})
except GatewayClusterError as exc:
    print("ERROR", str(exc).replace(chr(10), " | "))
else:
    print("NO ERROR")
"""


def _client_error(hub: RunningHub, tmp_path: Path, **options: object) -> str:
    code = NEW_CLUSTER_EXPECTING_FAILURE.format(options=options)
    out = checked(run_client(hub, "alice", code, tmp_path))
    errors = values(out, "ERROR")
    assert errors, out
    return errors[0]


def test_failing_worker_setup_fails_the_cluster_with_its_message(
    alice: HubgateAPI, ops_hub: RunningHub, tmp_path: Path
) -> None:
    setup = "echo 'conda environment dask-2024 not found' >&2; exit 3"
    code = textwrap.dedent(
        f"""
        from hubgate import Gateway
        cluster = Gateway().new_cluster(worker_setup={setup!r}, shutdown_on_close=False)
        print("NAME", cluster.name, flush=True)
        cluster.scale(1)
        """
    )
    out = checked(run_client(ops_hub, "alice", code, tmp_path))
    [name] = values(out, "NAME")
    record = alice.wait_for(name, _final, "the FAILED status", timeout=120)
    assert record["status"] == "FAILED", record
    reason = record["reason"]
    assert reason.startswith("3 workers in a row failed to start"), reason
    assert "conda environment dask-2024 not found" in reason, reason
    assert "exited with code 3" in reason, reason
    # the logs of the stopped cluster: the scheduler's and each failed worker's
    logs = alice.ok("GET", f"clusters/{name}/logs")
    assert logs["scheduler"] is not None, logs
    assert len(logs["workers"]) == 3, logs
    assert all("dask-2024 not found" in (text or "") for text in logs["workers"].values()), logs
    # and through hubgate's client
    code = f"""
from hubgate import Gateway
logs = Gateway().get_logs({name!r})
print("WORKER_LOGS", sum("dask-2024 not found" in (t or "") for t in logs["workers"].values()))
"""
    assert values(checked(run_client(ops_hub, "alice", code, tmp_path)), "WORKER_LOGS") == ["3"]


def test_missing_python_fails_at_once_with_a_reason(
    alice: HubgateAPI, ops_hub: RunningHub, tmp_path: Path
) -> None:
    error = _client_error(ops_hub, tmp_path, python="/opt/no-such-env/bin/python")
    assert "failed to start" in error, error
    assert "'/opt/no-such-env/bin/python' does not exist" in error, error


def test_environment_that_breaks_the_scheduler_fails_with_its_log(
    alice: HubgateAPI, ops_hub: RunningHub, tmp_path: Path
) -> None:
    # dask reads its configuration from DASK_* variables: a value it cannot parse makes
    # the scheduler crash on start.
    error = _client_error(
        ops_hub,
        tmp_path,
        environment={"DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING_INTERVAL": "soonish"},
    )
    assert "The scheduler failed to start" in error, error
    assert "Its last log lines:" in error and "soonish" in error, error


def test_reserved_environment_variables_are_refused(alice: HubgateAPI) -> None:
    everything = "clusters?status=pending,running,stopping,stopped,failed"
    before = len(alice.ok("GET", everything)["clusters"])
    status, body = alice.call(
        "POST", "clusters", {"options": {"environment": {"HUBGATE_LISTEN_HOST": "256.1.1.1"}}}
    )
    assert status == 422, body
    assert "HUBGATE_LISTEN_HOST" in body["error"], body
    assert len(alice.ok("GET", everything)["clusters"]) == before


def test_start_timeout_fails_with_a_reason(
    alice: HubgateAPI, ops_hub: RunningHub, tmp_path: Path
) -> None:
    # An "interpreter" that never starts a scheduler: it says so and waits. It lives
    # where alice's cluster account may run it (pytest's tmp_path is root's alone).
    with tempfile.TemporaryDirectory(prefix="hubgate-stuck-") as folder:
        os.chmod(folder, 0o755)
        stuck = Path(folder) / "stuck-python"
        stuck.write_text("#!/bin/sh\necho 'loading a very large environment...'\nexec sleep 600\n")
        os.chmod(stuck, 0o755)
        error = _client_error(ops_hub, tmp_path, python=str(stuck))
    assert "did not become ready within 20 s" in error, error
    assert "loading a very large environment" in error, error
