"""The Kubernetes backend end to end: real schedulers and workers (``python -m
hubgate.runtime.cluster_process``) in pods, through the stand-in API server by default, or a
real cluster with ``HUBGATE_TEST_KUBECONFIG`` (the test ids say which)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest

from hubgate.hub_service.tls import agenerate_cluster_credentials
from hubgate.spawners.base import BackendError, Phase, ProcessSpec

pytestmark = pytest.mark.usefixtures("clean_namespace")

GiB = 2**30
ALICE = "alice@example.org"  # not a valid label value: exercises the escaping


def runtime(kube_target: Any, role: str) -> list[str]:
    return [kube_target.python, "-m", "hubgate.runtime.cluster_process", role]


async def poll_until(backend: Any, state: dict[str, Any], phase: Phase, within: float = 120):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        [status] = await backend.poll([state])
        if status.phase is phase:
            return status
        assert loop.time() < deadline, f"{state['pod']} stayed {status}"
        await asyncio.sleep(0.1)


async def names_in_cluster(core_api: Any, namespace: str, cluster: str) -> dict[str, list[str]]:
    selector = f"hubgate.dask.org/cluster={cluster}"
    found = {}
    for kind, lister in (
        ("pods", core_api.list_namespaced_pod),
        ("services", core_api.list_namespaced_service),
        ("secrets", core_api.list_namespaced_secret),
    ):
        result = await lister(namespace, label_selector=selector)
        found[kind] = sorted(o.metadata.name for o in result.items)
    return found


@pytest.mark.slow
async def test_scheduler_and_workers_compute_then_cascade_against_apiserver(
    kube_target: Any, make_backend: Any, agent_endpoint: Any, core_api: Any, tmp_path: Path
) -> None:
    import dask.array as da
    from distributed import Client
    from distributed.security import Security

    cluster = f"k8s-e2e-{secrets.token_hex(3)}"
    creds = await agenerate_cluster_credentials(cluster)
    token = secrets.token_hex(16)
    agent_endpoint.tokens[cluster] = token
    backend = await make_backend()

    scheduler = await backend.start(
        ProcessSpec(
            cluster_name=cluster,
            role="scheduler",
            name="scheduler",
            username=ALICE,
            argv=runtime(kube_target, "scheduler"),
            env={
                "HUBGATE_CLUSTER_NAME": cluster,
                "HUBGATE_AGENT_URL": agent_endpoint.url,
                "HUBGATE_DASHBOARD_PREFIX": f"/services/dask-gateway/clusters/{cluster}",
            },
            files={**creds.credentials_files("scheduler"), "token": token.encode()},
            cores=0.5,
            memory=GiB,
        )
    )
    assert set(scheduler) == {"pod", "namespace", "uid"}
    hello = await agent_endpoint.wait_for(
        cluster, lambda msgs: next((m for m in msgs if m["type"] == "hello"), None)
    )
    await poll_until(backend, scheduler, Phase.RUNNING)
    address = hello["scheduler_address"]

    workers = {}
    for name in ("w-1", "w-2"):
        workers[name] = await backend.start(
            ProcessSpec(
                cluster_name=cluster,
                role="worker",
                name=name,
                username=ALICE,
                argv=runtime(kube_target, "worker"),
                env={
                    "HUBGATE_CLUSTER_NAME": cluster,
                    "HUBGATE_SCHEDULER_ADDRESS": address,
                    "HUBGATE_WORKER_NAME": name,
                    "HUBGATE_WORKER_THREADS": "1",
                    "HUBGATE_WORKER_MEMORY": str(GiB),
                },
                files=creds.credentials_files("worker"),
                cores=1,
                memory=GiB,
            )
        )

    def joined(msgs: list[dict[str, Any]]) -> set[str]:
        names = {m["name"] for m in msgs if m["type"] == "worker_added"}
        return names if names >= set(workers) else set()

    await agent_endpoint.wait_for(cluster, joined)
    for state in workers.values():
        await poll_until(backend, state, Phase.RUNNING)

    # a client with the cluster's client certificate computes on the two workers
    (tmp_path / "ca.crt").write_bytes(creds.ca_cert)
    (tmp_path / "client.crt").write_bytes(creds.client_cert)
    (tmp_path / "client.key").write_bytes(creds.client_key)
    security = Security(
        tls_ca_file=str(tmp_path / "ca.crt"),
        tls_client_cert=str(tmp_path / "client.crt"),
        tls_client_key=str(tmp_path / "client.key"),
        require_encryption=True,
    )
    async with Client(address, security=security, asynchronous=True) as client:
        total = await client.compute(da.ones((4000, 4000), chunks=500).sum())
        assert total == 4000 * 4000
        info = await client.scheduler.identity()
        assert sorted(w["name"] for w in info["workers"].values()) == ["w-1", "w-2"]

    # logs come from the API
    log = await backend.read_log(workers["w-1"], max_lines=200)
    assert log is not None and "w-1" in log

    # a worker pod deleted behind the backend's back is seen gone through the watch
    await core_api.delete_namespaced_pod(workers["w-1"]["pod"], kube_target.namespace)
    gone = await poll_until(backend, workers["w-1"], Phase.GONE)
    assert gone.reason
    await agent_endpoint.wait_for(
        cluster,
        lambda msgs: [m for m in msgs if m["type"] == "worker_removed" and m["name"] == "w-1"],
    )
    assert await backend.read_log(workers["w-1"]) is None

    # a restarted service (a fresh backend) rebuilds its view from the API server
    await backend.cleanup()
    restarted = await make_backend()
    statuses = await restarted.poll([scheduler, workers["w-1"], workers["w-2"]])
    assert [s.phase for s in statuses] == [Phase.RUNNING, Phase.GONE, Phase.RUNNING]

    # deleting the scheduler pod takes the workers, the service and the secrets with it
    escaped = "alice-40example.org"
    pod = await core_api.read_namespaced_pod(scheduler["pod"], kube_target.namespace)
    assert pod.metadata.labels["hubgate.dask.org/user"] == escaped
    before = await names_in_cluster(core_api, kube_target.namespace, cluster)
    assert before["services"] == [scheduler["pod"]]
    assert len(before["secrets"]) == 2  # the scheduler's and w-2's (w-1's went with its pod)
    await restarted.stop(scheduler)
    [status] = await restarted.poll([scheduler])
    assert status.phase is Phase.GONE
    await poll_until(restarted, workers["w-2"], Phase.GONE)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while (left := await names_in_cluster(core_api, kube_target.namespace, cluster)) != {
        "pods": [],
        "services": [],
        "secrets": [],
    }:
        assert loop.time() < deadline, f"left behind: {left}"
        await asyncio.sleep(0.2)
    await restarted.stop(scheduler)  # idempotent


async def test_scheduler_failure_reason_reaches_poll_against_apiserver(
    kube_target: Any, make_backend: Any
) -> None:
    backend = await make_backend()
    # No HUBGATE_CLUSTER_NAME: the runtime refuses to start and says why as its last line.
    state = await backend.start(
        ProcessSpec(
            cluster_name="k8s-broken",
            role="scheduler",
            name="scheduler",
            username="bob",
            argv=runtime(kube_target, "scheduler"),
            files={"ca.crt": b"x", "scheduler.crt": b"x", "scheduler.key": b"x"},
        )
    )
    status = await poll_until(backend, state, Phase.GONE)
    assert status.exit_code == 2
    assert "HUBGATE_CLUSTER_NAME is not set" in status.reason
    await backend.stop(state)


def _idle_scheduler(kube_target: Any, prefix: str) -> ProcessSpec:
    """A scheduler pod of bob's that sleeps (nothing in it answers): for what the
    backend does with the pod itself."""
    return ProcessSpec(
        cluster_name=f"{prefix}-{secrets.token_hex(3)}",
        role="scheduler",
        name="scheduler",
        username="bob",
        argv=[kube_target.python, "-c", "import time; time.sleep(120)"],
        files={"ca.crt": b"x", "scheduler.crt": b"x", "scheduler.key": b"x"},
    )


async def test_route_host_reads_the_pod_when_the_watch_lags_against_apiserver(
    kube_target: Any, make_backend: Any, core_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduler may say hello before the service's watch shows its pod's IP (a burst
    of creates, a slow kubelet report): the backend then asks the API server."""
    import hubgate.spawners.kubernetes as kubernetes_backend

    monkeypatch.setattr(kubernetes_backend, "POD_IP_WAIT", 0.2)
    backend = await make_backend()
    state = await backend.start(_idle_scheduler(kube_target, "k8s-lag"))
    await backend._reflector.stop()  # the watch sees nothing from now on

    async def reported_ip() -> str:
        while True:
            pod = await core_api.read_namespaced_pod(state["pod"], kube_target.namespace)
            if pod.status.pod_ip:
                return pod.status.pod_ip
            await asyncio.sleep(0.1)

    ip = await asyncio.wait_for(reported_ip(), 120)
    assert backend._reflector.get(state["pod"])["status"].get("podIP") is None
    assert await backend.route_host(state) == ip


async def test_starts_beyond_max_concurrent_starts_wait_their_turn_against_apiserver(
    kube_target: Any, make_backend: Any
) -> None:
    """A burst of starts creates at most ``max_concurrent_starts`` pods at a time, and
    every start still completes."""
    backend = await make_backend(max_concurrent_starts=2)
    in_flight = most = 0
    create = backend._create

    async def counted(kind: str, body: dict[str, Any]) -> dict[str, Any]:
        nonlocal in_flight, most
        if kind != "pod":
            return await create(kind, body)
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.05)  # hold the slot so that the others queue
            return await create(kind, body)
        finally:
            in_flight -= 1

    backend._create = counted
    states = await asyncio.gather(
        *(backend.start(_idle_scheduler(kube_target, f"k8s-burst-{n}")) for n in range(6))
    )
    assert most == 2
    assert len({state["pod"] for state in states}) == 6
    for state in states:
        await backend.stop(state)


async def test_poll_works_out_a_pods_status_once_per_version_against_apiserver(
    kube_target: Any, make_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manager polls every cluster every second: an unchanged pod's status is not
    worked out again; a changed one is."""
    import hubgate.spawners.kubernetes as kubernetes_backend

    backend = await make_backend()
    state = await backend.start(_idle_scheduler(kube_target, "k8s-poll"))
    await poll_until(backend, state, Phase.RUNNING)
    worked_out = []
    real = kubernetes_backend.pod_status

    def counted(pod: dict[str, Any]) -> Any:
        worked_out.append(pod["metadata"]["name"])
        return real(pod)

    monkeypatch.setattr(kubernetes_backend, "pod_status", counted)
    for _ in range(3):
        [status] = await backend.poll([state])
        assert status.phase is Phase.RUNNING
    assert len(worked_out) <= 1  # once at most (the watch may have had news since)
    await backend.stop(state)
    [status] = await backend.poll([state])
    assert status.phase is Phase.GONE


async def test_pending_reasons_against_apiserver(kube_target: Any, make_backend: Any) -> None:
    backend = await make_backend(
        instance_types={"gpu-node": {"node_selector": {"hubgate.test/pool": "gpus"}}}
    )

    def spec(cluster: str, **resources: Any) -> ProcessSpec:
        return ProcessSpec(
            cluster_name=cluster,
            role="scheduler",
            name="scheduler",
            username="bob",
            argv=runtime(kube_target, "scheduler"),
            files={"ca.crt": b"x"},
            resources=resources,
        )

    unschedulable = await backend.start(spec("k8s-nowhere", instance_type="gpu-node"))
    image = await backend.start(spec("k8s-noimage", image="registry.invalid/no-such-image:1"))

    async def pending_with(state: dict[str, Any], words: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while True:
            [status] = await backend.poll([state])
            assert status.phase is Phase.PENDING, status
            if words in status.reason:
                return
            assert loop.time() < deadline, status
            await asyncio.sleep(0.1)

    await pending_with(unschedulable, "Unschedulable")
    await pending_with(image, "ImagePullBackOff")
    for state in (unschedulable, image):
        await backend.stop(state)
        [status] = await backend.poll([state])
        assert status.phase is Phase.GONE

    with pytest.raises(BackendError, match="unknown instance type 'huge'.*gpu-node"):
        await backend.start(spec("k8s-huge", instance_type="huge"))


async def test_worker_without_scheduler_is_refused_against_apiserver(
    kube_target: Any, make_backend: Any
) -> None:
    backend = await make_backend()
    with pytest.raises(BackendError, match="scheduler of cluster k8s-orphan is not running"):
        await backend.start(
            ProcessSpec(
                cluster_name="k8s-orphan",
                role="worker",
                name="w",
                username="bob",
                argv=runtime(kube_target, "worker"),
            )
        )


async def test_scheduler_listens_on_the_service_ports_against_apiserver(
    kube_target: Any, make_backend: Any, agent_endpoint: Any
) -> None:
    cluster = f"k8s-ports-{secrets.token_hex(3)}"
    creds = await agenerate_cluster_credentials(cluster)
    agent_endpoint.tokens[cluster] = token = secrets.token_hex(16)
    backend = await make_backend()
    await backend.start(
        ProcessSpec(
            cluster_name=cluster,
            role="scheduler",
            name="scheduler",
            username="bob",
            argv=runtime(kube_target, "scheduler"),
            env={"HUBGATE_CLUSTER_NAME": cluster, "HUBGATE_AGENT_URL": agent_endpoint.url},
            files={**creds.credentials_files("scheduler"), "token": token.encode()},
        )
    )
    hello = await agent_endpoint.wait_for(
        cluster, lambda msgs: next((m for m in msgs if m["type"] == "hello"), None)
    )
    assert hello["scheduler_address"].endswith(":8786")
    assert hello["dashboard_address"].endswith(":8787")
