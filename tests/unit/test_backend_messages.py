"""Backends' errors reach users as they are (a FAILED cluster's reason), so they keep out
what is not the user's: the output of commands run as the service about everyone's jobs,
and what an API server echoes of a Secret. Useful refusals still get through."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from hubgate.spawners.base import BackendError
from hubgate.spawners.batch.command import failure, run_command
from hubgate.spawners.batch.parsing import JobInfo
from hubgate.spawners.batch.pbs import PBSBackend
from hubgate.spawners.kubernetes import KubernetesBackend

OTHERS = "job 99.pbs of carol: /home/carol/project-secret.txt"


class QueryFailsPBSBackend(PBSBackend):
    """PBS whose qstat (run as the service, so it may see everyone's jobs) fails and
    writes about another user's job on stderr."""

    async def query_jobs(
        self, job_ids: Sequence[str], prefix: Sequence[str] = ()
    ) -> dict[str, JobInfo]:
        argv = ["sh", "-c", f"echo 'qstat: {OTHERS}' >&2; exit 2"]
        raise failure(await run_command(argv, limit_seconds=30, check=False))


async def test_a_failed_node_query_says_what_failed_without_its_output(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = QueryFailsPBSBackend()
    caplog.set_level(logging.WARNING)
    with pytest.raises(BackendError) as info:
        await backend.route_host({"job_id": "12.pbs", "username": "alice"})
    message = str(info.value)
    assert message == (
        "PBS could not be asked which node job 12.pbs runs on; an administrator can find "
        "why in the service log"
    )
    assert OTHERS in caplog.text  # the operator's detail


def _api_exception(status: int, message: str) -> ApiException:
    exc = ApiException(status=status, reason="Unprocessable Entity")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


def test_a_refused_secret_is_not_echoed_to_the_user(caplog: pytest.LogCaptureFixture) -> None:
    backend = KubernetesBackend()
    echoed = 'Secret "hubgate-x" is invalid: data[token]: Invalid value: "c2VjcmV0LXRva2Vu"'
    caplog.set_level(logging.ERROR)
    error = backend._api_error(
        "create the scheduler's service or secret", _api_exception(422, echoed), quote=False
    )
    assert str(error) == (
        "Kubernetes could not create the scheduler's service or secret (HTTP 422); an "
        "administrator can find why in the service log"
    )
    assert echoed in caplog.text


def test_a_quota_refusal_of_a_pod_reaches_the_user() -> None:
    backend = KubernetesBackend()
    quota = 'pods "hubgate-x" is forbidden: exceeded quota: compute, requested: cpu=64'
    error = backend._api_error("create a pod", _api_exception(403, quota))
    assert str(error) == f"Kubernetes could not create a pod: {quota}"
    long = backend._api_error("create a pod", _api_exception(422, "x" * 5000))
    assert len(str(long)) < 600
