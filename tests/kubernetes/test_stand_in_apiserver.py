"""The stand-in Kubernetes API server behaves like the real one where the backend relies
on it (these tests only make sense for the stand-in; they are skipped against a real
cluster, whose behaviour they describe)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

from tests.fake_kube_apiserver.selectors import SelectorError, parse_label_selector


@pytest.fixture(autouse=True)
def _stand_in_only(kube_target: Any) -> None:
    if not kube_target.is_stand_in:
        pytest.skip("checks the stand-in API server itself")


NS = "hubgate-test"


def pod_body(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "hubgate", **extra}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "dask",
                    "image": "stand-in.local/python:3",
                    "command": [sys.executable, "-c", script],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ],
        },
    }


async def wait_pod(core: Any, name: str, predicate: Any, within: float = 60) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        pod = await core.read_namespaced_pod(name, NS)
        if predicate(pod):
            return pod
        assert loop.time() < deadline, f"pod {name} never reached the state: {pod.status}"
        await asyncio.sleep(0.1)


async def pod_gone(core: Any, name: str, within: float = 60) -> None:
    from kubernetes_asyncio.client.exceptions import ApiException

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        try:
            await core.read_namespaced_pod(name, NS)
        except ApiException as exc:
            assert exc.status == 404
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"pod {name} still exists")


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=1", {"a": "1"}, True),
        ("a==1", {"a": "2"}, False),
        ("a!=1", {}, True),
        ("a in (1, 2),b", {"a": "2", "b": "x"}, True),
        ("a notin (1,2)", {"a": "2"}, False),
        ("!b", {"a": "1"}, True),
        ("a,!b", {"a": "1", "b": ""}, False),
        ("", {"x": "y"}, True),
    ],
)
def test_stand_in_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector)(labels) is expected


def test_stand_in_rejects_bad_selector() -> None:
    with pytest.raises(SelectorError):
        parse_label_selector("a in 1")


async def test_pod_lifecycle_exit_code_and_log_against_stand_in_apiserver(
    core_api: Any, clean_namespace: None
) -> None:
    created = await core_api.create_namespaced_pod(
        NS, pod_body("exits", "import sys; print('line1'); print('line2'); sys.exit(3)")
    )
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.status.phase == "Pending"
    pod = await wait_pod(core_api, "exits", lambda p: p.status.phase == "Failed")
    term = pod.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (3, "Error")
    assert term.message.splitlines()[-1] == "line2"  # FallbackToLogsOnError
    assert await core_api.read_namespaced_pod_log("exits", NS, tail_lines=1) == "line2\n"
    await core_api.delete_namespaced_pod("exits", NS)
    await pod_gone(core_api, "exits")


async def test_list_watch_resource_version_and_410_against_stand_in_apiserver(
    kube_target: Any, core_api: Any, clean_namespace: None
) -> None:
    first = await core_api.list_namespaced_pod(NS)
    rv = first.metadata.resource_version
    await core_api.create_namespaced_pod(NS, pod_body("w1", "import time; time.sleep(60)"))
    resp = await core_api.list_namespaced_pod(
        NS,
        watch=True,
        resource_version=rv,
        label_selector="app.kubernetes.io/name=hubgate",
        timeout_seconds=30,
        _preload_content=False,
    )
    seen: list[tuple[str, str]] = []
    async with resp:
        async for line in resp.content:
            event = json.loads(line)
            seen.append((event["type"], event["object"]["status"].get("phase")))
            if event["object"]["status"].get("phase") == "Running":
                break
    assert seen[0] == ("ADDED", "Pending")
    assert ("MODIFIED", "Running") in seen
    second = await core_api.list_namespaced_pod(NS)
    assert int(second.metadata.resource_version) > int(rv)

    kube_target.stand_in.store.compact()
    resp = await core_api.list_namespaced_pod(
        NS, watch=True, resource_version=rv, timeout_seconds=30, _preload_content=False
    )
    async with resp:
        event = json.loads(await resp.content.readline())
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


async def test_deleting_owner_cascades_and_terminates_against_stand_in_apiserver(
    core_api: Any, clean_namespace: None
) -> None:
    owner = await core_api.create_namespaced_pod(
        NS, pod_body("owner", "import time; time.sleep(600)")
    )
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": owner.metadata.uid}
    child = pod_body("child", "import time; time.sleep(600)")
    child["metadata"]["ownerReferences"] = [ref]
    await core_api.create_namespaced_pod(NS, child)
    await core_api.create_namespaced_secret(
        NS,
        {"metadata": {"name": "owned", "ownerReferences": [ref]}, "stringData": {"k": "v"}},
    )
    await wait_pod(core_api, "child", lambda p: p.status.phase == "Running")
    await core_api.delete_namespaced_pod("owner", NS)
    await pod_gone(core_api, "owner")
    await pod_gone(core_api, "child")
    secrets = await core_api.list_namespaced_secret(NS)
    assert "owned" not in [s.metadata.name for s in secrets.items]


async def test_unschedulable_pod_stays_pending_against_stand_in_apiserver(
    core_api: Any, clean_namespace: None
) -> None:
    body = pod_body("nowhere", "pass")
    body["spec"]["nodeSelector"] = {"hubgate.test/pool": "gpus"}
    await core_api.create_namespaced_pod(NS, body)
    pod = await wait_pod(core_api, "nowhere", lambda p: p.status.conditions)
    assert pod.status.phase == "Pending"
    assert pod.status.conditions[0].reason == "Unschedulable"
