"""Pure builders of the Kubernetes objects of one cluster process (no I/O).

Each builder takes one :class:`KubeProcess` and returns a plain dict in the exact shape
the Kubernetes API accepts, so tests compare it with literal dicts and validate it
against the API schema, and the backend sends it as JSON.

Per cluster the backend makes, in this order:

1. the scheduler Pod (:func:`make_scheduler_pod`);
2. a headless Service for it (:func:`make_service`): ``<pod>.<namespace>.svc.<domain>``
   resolves straight to the scheduler pod, ports ``scheduler`` (TLS comm) and
   ``dashboard``;
3. the credentials Secret (:func:`make_secret`), mounted read-only in the pod;
4. worker Pods (:func:`make_worker_pod`), each with its own Secret.

Everything but the scheduler pod has the scheduler pod as owner, so deleting that pod
makes Kubernetes' garbage collector remove the rest. The pod waits in
``ContainerCreating`` until its Secret exists, which is why the Secret can come last.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DASHBOARD_PORT",
    "LABEL_CLUSTER",
    "LABEL_PROCESS",
    "LABEL_ROLE",
    "LABEL_USER",
    "SCHEDULER_PORT",
    "KubeProcess",
    "OwnerRef",
    "cpu_quantity",
    "escape_label_value",
    "make_scheduler_pod",
    "make_secret",
    "make_service",
    "make_worker_pod",
    "object_name",
    "service_dns_name",
]

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787

LABEL_APP = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_CLUSTER = "hubgate.dask.org/cluster"
LABEL_USER = "hubgate.dask.org/user"
LABEL_ROLE = "hubgate.dask.org/role"
LABEL_PROCESS = "hubgate.dask.org/process"
APP = "hubgate"
CONTAINER_NAME = "dask"
CREDENTIALS_VOLUME = "hubgate-credentials"

# DNS-1123 label (Service names must also start with a letter: ours start "hubgate-").
_MAX_LABEL = 63
_MAX_NAME = 253
_LABEL_VALUE_OK = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@dataclass(frozen=True)
class OwnerRef:
    """The object that owns another (always the scheduler Pod here)."""

    name: str
    uid: str
    kind: str = "Pod"
    api_version: str = "v1"

    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
        }


@dataclass(frozen=True)
class KubeProcess:
    """Everything the builders need to describe one scheduler or worker.

    ``name`` is the Pod's name (also the Service's and, plus ``-credentials``, the
    Secret's). ``env`` is complete: the backend has already added the ``HUBGATE_*``
    variables it owns. ``field_env`` maps variable names to downward-API field paths
    (``status.podIP``). ``files`` become the Secret mounted at ``credentials_path``.
    """

    name: str
    namespace: str
    cluster_name: str
    username: str
    role: str  # "scheduler" or "worker"
    process_name: str
    image: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    field_env: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    credentials_path: str = "/etc/hubgate/credentials"
    cores: float = 1
    memory: int = 2**30
    cpu_limit_ratio: float = 1.0
    image_pull_policy: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    fs_group: int | None = None
    # The uid the container runs as (None: the image's USER, which must not be root)
    run_as_user: int | None = None
    termination_grace_seconds: int = 30
    extra_labels: dict[str, str] = field(default_factory=dict)
    extra_annotations: dict[str, str] = field(default_factory=dict)
    owner: OwnerRef | None = None

    @property
    def secret_name(self) -> str:
        return object_name(self.name, "credentials")


# -- names and values -------------------------------------------------------------------


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def object_name(*parts: str, max_length: int = _MAX_LABEL) -> str:
    """A valid DNS-1123 label made of ``parts`` joined by ``-``.

    Characters Kubernetes does not allow become ``-``; when that changed anything or the
    name is too long, a hash of the original keeps distinct inputs distinct.
    """
    raw = "-".join(parts)
    clean = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    if clean == raw and len(clean) <= max_length:
        return clean
    suffix = _short_hash(raw)
    head = clean[: max_length - len(suffix) - 1].strip("-")
    return f"{head}-{suffix}" if head else f"x-{suffix}"


def escape_label_value(value: str) -> str:
    """``value`` as a valid label value: kept when already valid, otherwise each
    disallowed character becomes ``-XX`` (its hex code, as kubespawner does for pod
    names) and overlong results are cut with a hash."""
    if len(value) <= _MAX_LABEL and _LABEL_VALUE_OK.fullmatch(value):
        return value
    escaped = "".join(
        c if re.fullmatch(r"[A-Za-z0-9_.]", c) else "-" + "-".join(f"{b:02x}" for b in c.encode())
        for c in value
    )
    escaped = escaped.strip("-_.")
    if len(escaped) > _MAX_LABEL or not escaped:
        suffix = _short_hash(value)
        escaped = f"{escaped[: _MAX_LABEL - len(suffix) - 1].strip('-_.')}-{suffix}".lstrip("-")
    return escaped


def service_dns_name(name: str, namespace: str, cluster_domain: str = "cluster.local") -> str:
    """The DNS name of Service ``name`` in ``namespace``."""
    return f"{name}.{namespace}.svc.{cluster_domain}"


def cpu_quantity(cores: float) -> str:
    """A CPU quantity: ``"2"`` for whole cores, millicores (``"1500m"``) otherwise."""
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


# -- builders ---------------------------------------------------------------------------


def _labels(p: KubeProcess) -> dict[str, str]:
    return {
        **p.extra_labels,
        LABEL_APP: APP,
        LABEL_MANAGED_BY: APP,
        LABEL_CLUSTER: escape_label_value(p.cluster_name),
        LABEL_USER: escape_label_value(p.username),
        LABEL_ROLE: p.role,
        LABEL_PROCESS: escape_label_value(p.process_name),
    }


def _metadata(p: KubeProcess, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": p.namespace, "labels": _labels(p)}
    annotations = {
        **p.extra_annotations,
        # Label values are escaped; keep the real names for people reading the object.
        "hubgate.dask.org/cluster-name": p.cluster_name,
        "hubgate.dask.org/username": p.username,
    }
    meta["annotations"] = annotations
    if p.owner is not None:
        meta["ownerReferences"] = [p.owner.to_dict()]
    return meta


def _env(p: KubeProcess) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in p.env.items()]
    env += [
        {"name": k, "valueFrom": {"fieldRef": {"fieldPath": path}}}
        for k, path in p.field_env.items()
    ]
    return env


def _resources(p: KubeProcess) -> dict[str, Any]:
    requests = {"cpu": cpu_quantity(p.cores), "memory": str(p.memory)}
    # The memory limit equals the request: Dask sizes itself to it, and a pod that goes
    # beyond is OOM-killed rather than starving its neighbours.
    limits = {"memory": str(p.memory)}
    if p.cpu_limit_ratio > 0:
        limits["cpu"] = cpu_quantity(p.cores * p.cpu_limit_ratio)
    return {"requests": requests, "limits": limits}


def _pod(p: KubeProcess, ports: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": p.image,
        "command": list(p.command),
        "env": _env(p),
        "resources": _resources(p),
        # The runtime prints why it failed as its last line: Kubernetes then shows it
        # in the container's terminated state.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": CREDENTIALS_VOLUME, "mountPath": p.credentials_path, "readOnly": True}
        ],
        # The user's code: no way back to more privileges than the pod was given.
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if ports:
        container["ports"] = ports
    if p.image_pull_policy:
        container["imagePullPolicy"] = p.image_pull_policy
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": p.termination_grace_seconds,
        # The process needs no Kubernetes API access: do not hand it a token.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": [
            {
                "name": CREDENTIALS_VOLUME,
                "secret": {"secretName": p.secret_name, "defaultMode": 0o400},
            }
        ],
    }
    if p.service_account:
        spec["serviceAccountName"] = p.service_account
    if p.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in p.image_pull_secrets]
    if p.node_selector:
        spec["nodeSelector"] = dict(p.node_selector)
    if p.tolerations:
        spec["tolerations"] = [dict(t) for t in p.tolerations]
    # The kubelet refuses to start the container as root, whatever the image says.
    security: dict[str, Any] = {"runAsNonRoot": True}
    if p.run_as_user is not None:
        security["runAsUser"] = p.run_as_user
    if p.fs_group is not None:
        # With fsGroup the kubelet gives the Secret's files to this group (mode 0440),
        # so a non-root image user in that group can read them.
        security["fsGroup"] = p.fs_group
    spec["securityContext"] = security
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _metadata(p, p.name), "spec": spec}


def make_scheduler_pod(p: KubeProcess) -> dict[str, Any]:
    """The scheduler's Pod; it owns everything else of its cluster."""
    if p.role != "scheduler":
        raise ValueError(f"make_scheduler_pod needs a scheduler, got role {p.role!r}")
    ports = [
        {"name": "scheduler", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
        {"name": "dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
    ]
    return _pod(p, ports)


def make_worker_pod(p: KubeProcess) -> dict[str, Any]:
    """A worker's Pod, owned by its scheduler's Pod."""
    if p.role != "worker":
        raise ValueError(f"make_worker_pod needs a worker, got role {p.role!r}")
    if p.owner is None:
        raise ValueError("a worker pod needs its scheduler pod as owner")
    return _pod(p, [])


def make_service(p: KubeProcess) -> dict[str, Any]:
    """The headless Service that names the scheduler pod in DNS (same name as the pod)."""
    if p.role != "scheduler" or p.owner is None:
        raise ValueError("a Service is made for a scheduler whose pod exists (owner set)")
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(p, p.name),
        "spec": {
            "clusterIP": "None",
            # Resolve as soon as the pod has an address: workers may start meanwhile.
            "publishNotReadyAddresses": True,
            "selector": {
                LABEL_CLUSTER: escape_label_value(p.cluster_name),
                LABEL_ROLE: "scheduler",
            },
            "ports": [
                {
                    "name": "scheduler",
                    "port": SCHEDULER_PORT,
                    "targetPort": SCHEDULER_PORT,
                    "protocol": "TCP",
                },
                {
                    "name": "dashboard",
                    "port": DASHBOARD_PORT,
                    "targetPort": DASHBOARD_PORT,
                    "protocol": "TCP",
                },
            ],
        },
    }


def make_secret(p: KubeProcess) -> dict[str, Any]:
    """The Secret holding the process's credentials files."""
    if p.owner is None:
        raise ValueError("a credentials Secret needs its scheduler pod as owner")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(p, p.secret_name),
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode("ascii") for k, v in sorted(p.files.items())},
    }
