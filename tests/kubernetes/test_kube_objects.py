"""The pure object builders, against literal dicts and the Kubernetes API schema."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import kubernetes_validate
import pytest

from hubgate.spawners.kube_objects import (
    KubeProcess,
    OwnerRef,
    cpu_quantity,
    escape_label_value,
    make_scheduler_pod,
    make_secret,
    make_service,
    make_worker_pod,
    object_name,
)
from hubgate.spawners.kubernetes import KubernetesBackend

# A current Kubernetes release whose schema kubernetes-validate ships.
KUBE_VERSION = "1.35"

SCHEDULER = KubeProcess(
    name="hubgate-c1-scheduler",
    namespace="dask",
    cluster_name="c1",
    username="alice@example.org",
    role="scheduler",
    process_name="scheduler",
    image="pangeo/base-notebook:2024.01.01",
    command=["python", "-m", "hubgate.runtime.cluster_process", "scheduler"],
    env={"HUBGATE_CLUSTER_NAME": "c1"},
    files={"ca.crt": b"CA", "token": b"secret"},
    cores=0.5,
    memory=2**30,
    fs_group=100,
    run_as_user=1000,
    termination_grace_seconds=30,
)
OWNER = OwnerRef(name="hubgate-c1-scheduler", uid="1234-5678")

LABELS = {
    "app.kubernetes.io/name": "hubgate",
    "app.kubernetes.io/managed-by": "hubgate",
    "hubgate.dask.org/cluster": "c1",
    "hubgate.dask.org/user": "alice-40example.org",
    "hubgate.dask.org/role": "scheduler",
    "hubgate.dask.org/process": "scheduler",
}
ANNOTATIONS = {
    "hubgate.dask.org/cluster-name": "c1",
    "hubgate.dask.org/username": "alice@example.org",
}
OWNER_REFS = [
    {"apiVersion": "v1", "kind": "Pod", "name": "hubgate-c1-scheduler", "uid": "1234-5678"}
]


def valid(obj: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(
            f"{obj['kind']} does not match the Kubernetes {KUBE_VERSION} schema: "
            f"{str(exc).splitlines()[0]}"
        )


def test_scheduler_pod() -> None:
    pod = make_scheduler_pod(SCHEDULER)
    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "hubgate-c1-scheduler",
            "namespace": "dask",
            "labels": LABELS,
            "annotations": ANNOTATIONS,
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 100},
            "containers": [
                {
                    "name": "dask",
                    "image": "pangeo/base-notebook:2024.01.01",
                    "command": ["python", "-m", "hubgate.runtime.cluster_process", "scheduler"],
                    "env": [{"name": "HUBGATE_CLUSTER_NAME", "value": "c1"}],
                    "resources": {
                        "requests": {"cpu": "500m", "memory": "1073741824"},
                        "limits": {"cpu": "500m", "memory": "1073741824"},
                    },
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "volumeMounts": [
                        {
                            "name": "hubgate-credentials",
                            "mountPath": "/etc/hubgate/credentials",
                            "readOnly": True,
                        }
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "ports": [
                        {"name": "scheduler", "containerPort": 8786, "protocol": "TCP"},
                        {"name": "dashboard", "containerPort": 8787, "protocol": "TCP"},
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "hubgate-credentials",
                    "secret": {
                        "secretName": "hubgate-c1-scheduler-credentials",
                        "defaultMode": 0o400,
                    },
                }
            ],
        },
    }
    valid(pod)


def test_worker_pod_with_placement_and_pull_settings() -> None:
    worker = replace(
        SCHEDULER,
        name="hubgate-c1-worker-w1",
        role="worker",
        process_name="w1",
        command=["python", "-m", "hubgate.runtime.cluster_process", "worker"],
        env={},
        field_env={"HUBGATE_ADVERTISE_HOST": "status.podIP"},
        cores=2,
        cpu_limit_ratio=0,
        fs_group=None,
        run_as_user=None,
        image_pull_policy="Always",
        image_pull_secrets=("regcred",),
        service_account="dask",
        node_selector={"pool": "workers"},
        tolerations=(
            {"key": "dedicated", "operator": "Equal", "value": "dask", "effect": "NoSchedule"},
        ),
        extra_labels={"team": "geo", "hubgate.dask.org/role": "ignored"},
        owner=OWNER,
    )
    pod = make_worker_pod(worker)
    assert pod["metadata"]["labels"] == {
        **LABELS,
        "team": "geo",
        "hubgate.dask.org/role": "worker",
        "hubgate.dask.org/process": "w1",
    }
    assert pod["metadata"]["ownerReferences"] == OWNER_REFS
    spec = pod["spec"]
    assert spec["securityContext"] == {"runAsNonRoot": True}  # the image's (non-root) USER
    assert spec["serviceAccountName"] == "dask"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"pool": "workers"}
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "dask", "effect": "NoSchedule"}
    ]
    container = spec["containers"][0]
    assert "ports" not in container
    assert container["imagePullPolicy"] == "Always"
    assert container["env"] == [
        {"name": "HUBGATE_ADVERTISE_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    ]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "1073741824"},
        "limits": {"memory": "1073741824"},
    }
    valid(pod)
    with pytest.raises(ValueError, match="owner"):
        make_worker_pod(replace(worker, owner=None))


def test_service() -> None:
    svc = make_service(replace(SCHEDULER, owner=OWNER))
    assert svc == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "hubgate-c1-scheduler",
            "namespace": "dask",
            "labels": LABELS,
            "annotations": ANNOTATIONS,
            "ownerReferences": OWNER_REFS,
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"hubgate.dask.org/cluster": "c1", "hubgate.dask.org/role": "scheduler"},
            "ports": [
                {"name": "scheduler", "port": 8786, "targetPort": 8786, "protocol": "TCP"},
                {"name": "dashboard", "port": 8787, "targetPort": 8787, "protocol": "TCP"},
            ],
        },
    }
    valid(svc)


def test_secret() -> None:
    secret = make_secret(replace(SCHEDULER, owner=OWNER))
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "hubgate-c1-scheduler-credentials",
            "namespace": "dask",
            "labels": LABELS,
            "annotations": ANNOTATIONS,
            "ownerReferences": OWNER_REFS,
        },
        "type": "Opaque",
        "data": {
            "ca.crt": base64.b64encode(b"CA").decode(),
            "token": base64.b64encode(b"secret").decode(),
        },
    }
    valid(secret)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("hubgate", "c1", "scheduler"), "hubgate-c1-scheduler"),
        (("hubgate", "My_Cluster", "scheduler"), "hubgate-my-cluster-scheduler-"),
        (("hubgate", "x" * 80, "scheduler"), "hubgate-xxx"),
    ],
)
def test_object_names_are_dns_labels(parts: tuple[str, ...], expected: str) -> None:
    name = object_name(*parts)
    assert name.startswith(expected)
    assert len(name) <= 63
    assert name == name.lower() and name[0].isalnum() and name[-1].isalnum()
    assert object_name("hubgate", "a_b") != object_name("hubgate", "a-b")  # no collisions


@pytest.mark.parametrize(
    ("value", "expected"),
    [("alice", "alice"), ("alice@example.org", "alice-40example.org"), ("ünï", "-c3-bcn-c3-af")],
)
def test_label_value_escaping(value: str, expected: str) -> None:
    escaped = escape_label_value(value)
    assert escaped == expected.strip("-")
    assert len(escape_label_value("é" * 60)) <= 63


def test_cpu_quantity() -> None:
    assert [cpu_quantity(c) for c in (1, 0.5, 2.25, 16)] == ["1", "500m", "2250m", "16"]


def test_every_config_trait_has_help() -> None:
    missing = [
        name
        for name, trait in KubernetesBackend.class_traits(config=True).items()
        if not (trait.help or "").strip()
    ]
    assert missing == []
