"""The foundation issue's user snippet on the Kubernetes backend, end to end: a real
JupyterHub whose hubgate service runs every scheduler and worker as a pod through the
stand-in API server of ``tests/fake_kube_apiserver`` (a separate process; no real
Kubernetes runs on these machines, so every test name says "stand_in_apiserver")."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hubgate.spawners.kube_objects import LABEL_CLUSTER, LABEL_ROLE, LABEL_USER, escape_label_value
from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.dashboard_client import open_dashboard
from tests.e2e.service_api import ServiceApi
from tests.e2e.snippets import USER_SNIPPET
from tests.fixtures.hub import gateway_env, run_python, start_hub

pytestmark = pytest.mark.slow

NAMESPACE = "hubgate-on-kube"
# The stand-in runs each container's command as a local process; the image is a name.
IMAGE = "stand-in.local/hubgate-python:dev"


def kubernetes_service_config(kubeconfig: Path) -> str:
    """Lines appended to the service's hubgate_config.py: the Kubernetes backend, pods
    running this venv's Python."""
    return "\n".join(
        [
            'c.HubgateService.backend_class = "kubernetes"',
            f"c.HubgateService.python = {sys.executable!r}",
            f"c.KubernetesBackend.kubeconfig = {str(kubeconfig)!r}",
            f"c.KubernetesBackend.namespace = {NAMESPACE!r}",
            f"c.KubernetesBackend.image = {IMAGE!r}",
            "c.KubernetesBackend.termination_grace_seconds = 5",
        ]
    )


@pytest.fixture(scope="module")
def kube_hub(
    stand_in_process: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    """A real hub whose service uses the Kubernetes backend against the stand-in."""
    extra = kubernetes_service_config(stand_in_process.kubeconfig)
    hub = start_hub(tmp_path_factory.mktemp("kube-hub"), hubgate_config_extra=extra)
    try:
        yield hub
    finally:
        hub.stop()


def wait_until(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not {what} after {timeout} s"
        time.sleep(0.2)
    return result


def pods_of_user(stand_in: Any, user: str) -> list[dict[str, Any]]:
    return stand_in.pods(NAMESPACE, f"{LABEL_USER}={escape_label_value(user)}")


def pods_of_cluster(stand_in: Any, cluster: str, role: str | None = None) -> list[dict[str, Any]]:
    selector = f"{LABEL_CLUSTER}={escape_label_value(cluster)}"
    if role:
        selector += f",{LABEL_ROLE}={role}"
    return stand_in.pods(NAMESPACE, selector)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("client", ["dask_gateway", "hubgate"])
def test_user_snippet_on_kubernetes_against_stand_in_apiserver(
    kube_hub: RunningHub, stand_in_process: Any, client: str, tmp_path: Path
) -> None:
    user = "alice"
    since = stand_in_process.watch_start(NAMESPACE)
    out = run_python(
        USER_SNIPPET.format(client=client), gateway_env(kube_hub, user), tmp_path, timeout=600
    )
    assert "SNIPPET OK" in out, out
    link = next(line.split()[1] for line in out.splitlines() if line.startswith("DASHBOARD"))
    assert link.startswith(kube_hub.settings.gateway_address + "/clusters/"), link
    # it ran on pods: scheduler pods, and four worker pods running at the same time
    events = stand_in_process.pod_events_since(
        NAMESPACE, f"{LABEL_USER}={escape_label_value(user)}", since
    )
    running: set[str] = set()
    most_workers = 0
    schedulers: set[str] = set()
    for event in events:
        pod = event["object"]
        uid, role = pod["metadata"]["uid"], pod["metadata"]["labels"][LABEL_ROLE]
        if event["type"] != "DELETED" and pod["status"].get("phase") == "Running":
            running.add(uid)
            if role == "scheduler":
                schedulers.add(uid)
        else:
            running.discard(uid)
        most_workers = max(most_workers, len(running - schedulers))
    # cluster, small, kept and GatewayCluster(...)
    assert len(schedulers) >= 4, f"{len(schedulers)} scheduler pods ran, not 4"
    assert most_workers >= 4, f"at most {most_workers} worker pods ran at once"
    # every cluster the snippet made is stopped, so none of its pods is left
    wait_until(lambda: not pods_of_user(stand_in_process, user), "rid of alice's pods")


def test_dashboard_and_replaced_worker_pod_on_kubernetes_against_stand_in_apiserver(
    kube_hub: RunningHub, stand_in_process: Any
) -> None:
    api = ServiceApi(kube_hub)
    user = "bob"
    created = api.create_cluster(user, {"worker_cores": 1, "worker_memory": 1})
    name = created["name"]
    try:
        api.ok("POST", f"/api/hubgate/clusters/{name}/scale", {"count": 2}, user=user)
        cluster = api.wait_running(name, user, workers=2)

        # the scheduler and the workers are pods of this cluster, owned by bob
        [scheduler_pod] = pods_of_cluster(stand_in_process, name, "scheduler")
        assert scheduler_pod["status"]["phase"] == "Running"
        workers = wait_until(
            lambda: (
                (
                    pods := [
                        p
                        for p in pods_of_cluster(stand_in_process, name, "worker")
                        if p["status"]["phase"] == "Running"
                    ]
                )
                and len(pods) == 2
                and pods
            ),
            "two running worker pods",
        )

        # the dashboard answers through the hub for the owner, and no one else
        assert cluster["dashboard_url"], cluster
        url = kube_hub.settings.hub_url + cluster["dashboard_url"]
        # through the service's entry, the ticket and the cluster's dashboard origin
        page = open_dashboard(url, kube_hub.tokens[user])
        assert page.code == 200, page.body[:500]
        assert b"bokeh" in page.body.lower(), page.body[:500]
        refused = open_dashboard(url, kube_hub.tokens["alice"])
        assert refused.code in (403, 404)

        # a worker pod deleted behind the service's back is noticed and replaced
        victim = workers[0]["metadata"]
        started = time.monotonic()
        stand_in_process.delete_pod(NAMESPACE, victim["name"])

        def replaced() -> list[dict[str, Any]] | None:
            running = [
                p
                for p in pods_of_cluster(stand_in_process, name, "worker")
                if p["status"]["phase"] == "Running"
                and p["metadata"]["uid"] != victim["uid"]
                and not p["metadata"].get("deletionTimestamp")
            ]
            return running if len(running) == 2 else None

        wait_until(replaced, "back to two running worker pods", timeout=120)
        api.wait_for_cluster(
            name,
            user,
            lambda c: c["status"] == "RUNNING" and c["workers"]["running"] == 2,
            "back to two running workers",
            timeout=120,
        )
        # not asserted (no timed assertions in tests); the issue asks for ~10 s
        print(f"REPLACED in {time.monotonic() - started:.1f} s")
    finally:
        api.stop_and_wait(name, user=user)

    # after shutdown no pod of the cluster remains in the stand-in
    wait_until(
        lambda: not pods_of_cluster(stand_in_process, name),
        f"rid of the pods of {name}",
        timeout=120,
    )


@pytest.mark.timeout(900)
def test_hubgate_client_connects_to_the_scheduler_pod_directly_against_stand_in_apiserver(
    kube_hub: RunningHub, stand_in_process: Any, tmp_path: Path
) -> None:
    """Direct connect on Kubernetes: hubgate's client reaches the scheduler pod's IP
    (the stand-in's pods have 127.a.b.c addresses of their own) on the scheduler port."""
    code = """
from hubgate import Gateway
with Gateway().new_cluster() as cluster:
    cluster.scale(1)
    client = cluster.get_client()
    client.wait_for_workers(1, timeout=300)
    print("ADDRESS", cluster.scheduler_address, client.scheduler.address)
    print("SUM", client.submit(sum, [1, 2]).result())
    client.close()
"""
    out = run_python(code, gateway_env(kube_hub, "alice"), tmp_path, timeout=600)
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    chosen, connected = lines["ADDRESS"]
    assert chosen == connected, out
    host, _, port = chosen.removeprefix("tls://").rpartition(":")
    # a pod's own IP, not the service's host (the proxy is at 127.0.0.1)
    assert host.startswith("127.") and host != "127.0.0.1" and port == "8786", out
    assert lines["SUM"] == ["3"], out
    wait_until(lambda: not pods_of_user(stand_in_process, "alice"), "rid of alice's pods")
