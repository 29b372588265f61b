"""The Kubernetes backend: every scheduler and worker is a Pod.

Per cluster: the scheduler Pod, a headless Service naming it in DNS and a Secret with its
credentials; per worker a Pod and its Secret. The scheduler Pod owns the Service, its
Secret and the worker Pods (which own their Secrets), so deleting the scheduler Pod lets
Kubernetes' garbage collector remove the whole cluster, even if the service is down.

One watch (:class:`PodReflector`: list, then watch from the list's resourceVersion,
relist on ``410 Gone``, capped backoff on errors) keeps a local copy of this backend's
pods, so :meth:`KubernetesBackend.poll` answers for any number of processes without an
API call, and notices a deleted pod as soon as the API server says so. Everything goes
through ``kubernetes_asyncio``; nothing blocks the event loop.

The objects themselves are built by the pure functions of :mod:`.kube_objects`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
from traitlets import Dict, Float, Int, List, TraitError, Unicode, default, validate

from ..config_keys import unknown_keys_message
from .base import Backend, BackendError, Phase, ProcessSpec, ProcessState, ProcessStatus
from .kube_objects import (
    CONTAINER_NAME,
    DASHBOARD_PORT,
    LABEL_APP,
    LABEL_CLUSTER,
    LABEL_ROLE,
    SCHEDULER_PORT,
    KubeProcess,
    OwnerRef,
    escape_label_value,
    make_scheduler_pod,
    make_secret,
    make_service,
    make_worker_pod,
    object_name,
    service_dns_name,
)

__all__ = ["KubernetesBackend", "PodReflector", "pod_status"]

_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Seconds route_host waits for the watch to show a running scheduler pod's IP.
POD_IP_WAIT = 10.0
# Enough of an API server's refusal (a quota, an invalid field) for a user's message.
_API_MESSAGE_CHARS = 500


# -- pod status -> ProcessStatus --------------------------------------------------------


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return term
    return None


def pod_status(pod: dict[str, Any]) -> ProcessStatus:
    """What a (raw, JSON) pod says about its process, in words for the user."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    term = _terminated(pod)
    if phase in ("Succeeded", "Failed") or term is not None:
        if term is None:
            # Evicted, node lost...: the pod failed without a container status.
            reason = status.get("reason") or phase.lower()
            message = status.get("message") or ""
            return ProcessStatus(Phase.GONE, f"pod {reason}: {message}".rstrip(": "))
        code = term.get("exitCode")
        why = term.get("reason") or ""
        text = "exited normally" if code == 0 else f"exited with code {code}"
        if why == "OOMKilled":
            text += " (killed: out of memory; give each process more memory)"
        elif why and why not in ("Completed", "Error"):
            text += f" ({why})"
        # FallbackToLogsOnError puts the log's tail here; the runtime's last line says why.
        detail = _last_line(term.get("message"))
        if detail and code != 0:
            text += f": {detail}"
        return ProcessStatus(Phase.GONE, text, exit_code=code)
    if phase == "Running":
        return ProcessStatus(Phase.RUNNING)
    # Pending: say what it waits for.
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            reason = cond.get("reason") or "Unschedulable"
            return ProcessStatus(
                Phase.PENDING, f"{reason}: {cond.get('message') or ''}".rstrip(": ")
            )
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            reason = waiting.get("reason") or "waiting"
            message = waiting.get("message") or ""
            return ProcessStatus(Phase.PENDING, f"{reason}: {message}".rstrip(": "))
    if not status.get("conditions"):
        return ProcessStatus(Phase.PENDING, "waiting to be scheduled")
    return ProcessStatus(Phase.PENDING, "ContainerCreating")


# -- the watch ----------------------------------------------------------------------------


class _Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class PodReflector:
    """A local copy of the pods matching ``label_selector`` in ``namespace``, kept
    current by one list + watch. ``first_load`` resolves after the first full list."""

    #: Tombstones kept so a late create response cannot resurrect a deleted pod.
    max_tombstones = 10_000

    def __init__(
        self,
        core: Any,
        namespace: str,
        label_selector: str,
        log: Any,
        *,
        watch_timeout: int = 300,
        max_backoff: float = 10.0,
    ) -> None:
        self.core = core
        self.namespace = namespace
        self.label_selector = label_selector
        self.log = log
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.pods: dict[str, dict[str, Any]] = {}
        self.deleted_uids: OrderedDict[str, None] = OrderedDict()
        self.first_load: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.resource_version: str | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hubgate-pod-reflector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # reading

    def get(self, name: str, uid: str | None = None) -> dict[str, Any] | None:
        pod = self.pods.get(name)
        if pod is None or (uid and pod["metadata"].get("uid") != uid):
            return None
        return pod

    def find(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [p for p in self.pods.values() if predicate(p)]

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> bool:
        """Wait until ``predicate()`` is true after some change (or now); False when
        ``within`` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True

    # writing

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _put(self, pod: dict[str, Any]) -> None:
        self.pods[pod["metadata"]["name"]] = pod

    def _delete(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        current = self.pods.get(meta["name"])
        if current is not None and current["metadata"].get("uid") == meta.get("uid"):
            del self.pods[meta["name"]]
        self.deleted_uids[meta.get("uid", "")] = None
        while len(self.deleted_uids) > self.max_tombstones:
            self.deleted_uids.popitem(last=False)

    def observe_created(self, pod: dict[str, Any]) -> None:
        """Record a pod we just created, unless the watch already knows it (or saw it go)."""
        meta = pod["metadata"]
        current = self.pods.get(meta["name"])
        if meta["uid"] in self.deleted_uids:
            return
        if current is None or current["metadata"].get("uid") != meta["uid"]:
            self._put(pod)
            self._notify()

    # the loop

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._list()
                backoff = 0.1
                while True:
                    await self._watch()
            except asyncio.CancelledError:
                raise
            except _Gone:
                self.log.debug("pod watch: resourceVersion too old, listing again")
                continue
            except Exception as exc:
                self.log.warning(
                    "Kubernetes pod watch in %s failed (%s); retrying in %.1fs",
                    self.namespace,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)

    async def _list(self) -> None:
        resp = await self.core.list_namespaced_pod(
            self.namespace,
            label_selector=self.label_selector,
            _preload_content=False,
            _request_timeout=60,
        )
        async with resp:
            body = json.loads(await resp.read())
        previous = self.pods
        self.pods = {p["metadata"]["name"]: p for p in body.get("items") or []}
        for name, pod in previous.items():
            if (
                name not in self.pods
                or self.pods[name]["metadata"]["uid"] != pod["metadata"]["uid"]
            ):
                self._delete(pod)
        self.resource_version = body["metadata"]["resourceVersion"]
        if not self.first_load.done():
            self.first_load.set_result(None)
        self._notify()

    async def _watch(self) -> None:
        resp = await self.core.list_namespaced_pod(
            self.namespace,
            label_selector=self.label_selector,
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout,
            _preload_content=False,
            # A server that dies silently must not hang the watch forever.
            _request_timeout=aiohttp.ClientTimeout(sock_read=self.watch_timeout + 30),
        )
        async with resp:
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise RuntimeError(f"watch error: {obj.get('message') or obj}")
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.resource_version = rv
                if kind in ("ADDED", "MODIFIED"):
                    self._put(obj)
                elif kind == "DELETED":
                    self._delete(obj)
                else:
                    continue  # BOOKMARK
                self._notify()


# -- the backend ----------------------------------------------------------------------


class KubernetesBackend(Backend):
    """Runs each scheduler and worker as a Kubernetes Pod."""

    backend_name = "kubernetes"
    fixed_ports: ClassVar[dict[str, int]] = {
        "scheduler": SCHEDULER_PORT,
        "dashboard": DASHBOARD_PORT,
    }
    accepted_resources: ClassVar[dict[str, str]] = {
        "instance_type": "a key of KubernetesBackend.instance_types: where the pods run",
    }

    listen_host = Unicode(
        "0.0.0.0",
        config=True,
        help="""Address schedulers and workers bind inside their pods.

        0.0.0.0 (all of the pod's addresses) is right for pods: other pods reach them
        through the pod IP or the scheduler's Service.
        """,
    )

    namespace = Unicode(
        config=True,
        help="""Namespace for the clusters' pods, services and secrets.

        Defaults to $POD_NAMESPACE, else the namespace of the service's own pod (when it
        runs in Kubernetes), else "default".
        """,
    )

    @default("namespace")
    def _default_namespace(self) -> str:
        if os.environ.get("POD_NAMESPACE"):
            return os.environ["POD_NAMESPACE"]
        try:
            return (_SA_DIR / "namespace").read_text().strip() or "default"
        except OSError:
            return "default"

    kubeconfig = Unicode(
        config=True,
        help="""Path of a kubeconfig file to reach the cluster with.

        Empty (the default): the in-cluster service account when the service runs in a
        pod, else $KUBECONFIG or ~/.kube/config.
        """,
    )

    @default("kubeconfig")
    def _default_kubeconfig(self) -> str:
        return os.environ.get("KUBECONFIG", "") if not self._in_cluster() else ""

    image = Unicode(
        config=True,
        help="""Container image of schedulers and workers, unless a cluster's "image"
        option chooses another.

        Defaults to $JUPYTER_IMAGE_SPEC (or $JUPYTER_IMAGE), the notebook image that
        zero-to-jupyterhub sets, so workers run the same software as notebooks. The image
        must contain Python with hubgate, dask and distributed.
        """,
    )

    @default("image")
    def _default_image(self) -> str:
        return os.environ.get("JUPYTER_IMAGE_SPEC") or os.environ.get("JUPYTER_IMAGE", "")

    image_pull_policy = Unicode(
        "",
        config=True,
        help="""imagePullPolicy of the containers: Always, IfNotPresent or Never. Empty:
        Kubernetes' default (Always for :latest tags, else IfNotPresent).""",
    )

    image_pull_secrets = List(
        Unicode(),
        config=True,
        help="Names of Secrets (in the namespace) used to pull the image from a private registry.",
    )

    service_account = Unicode(
        "",
        config=True,
        help="""ServiceAccount the pods run as (empty: the namespace's default). The pods
        never get its API token mounted: Dask processes need no Kubernetes access.""",
    )

    node_selector = Dict(
        value_trait=Unicode(),
        key_trait=Unicode(),
        config=True,
        help="""nodeSelector for every scheduler and worker pod, e.g.
        {"hub.jupyter.org/node-purpose": "user"}. An instance type's own nodeSelector
        (see instance_types) is merged over it.""",
    )

    tolerations = List(
        Dict(),
        config=True,
        help="""Tolerations for every scheduler and worker pod, e.g.
        [{"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user",
        "effect": "NoSchedule"}]. An instance type's tolerations are added.""",
    )

    instance_types = Dict(
        config=True,
        help="""Node placement per instance type, chosen by a cluster's "instance_type"
        option: {"r5.4xlarge": {"node_selector": {"node.kubernetes.io/instance-type":
        "r5.4xlarge"}, "tolerations": [...]}}. A cluster that names an instance type not
        listed here is refused with the list of known ones.""",
    )

    @validate("tolerations")
    def _check_tolerations(self, proposal: Any) -> Any:
        for index, toleration in enumerate(proposal["value"]):
            _check_toleration(toleration, f"{type(self).__name__}.tolerations[{index}]")
        return proposal["value"]

    @validate("instance_types")
    def _check_instance_types(self, proposal: Any) -> Any:
        for name, placement in proposal["value"].items():
            _check_placement(placement, f"{type(self).__name__}.instance_types[{name!r}]")
        return proposal["value"]

    extra_labels = Dict(
        config=True,
        help="Extra labels on every pod, service and secret (hubgate's own labels win).",
    )

    extra_annotations = Dict(
        config=True,
        help="Extra annotations on every pod, service and secret.",
    )

    cpu_limit_ratio = Float(
        1.0,
        config=True,
        help="""CPU limit of a pod as a multiple of its CPU request (the process's cores).
        1 caps each process at what it asked for; 0 sets no CPU limit. Memory limits
        always equal the request, because Dask sizes itself to it.""",
    )

    credentials_mount_path = Unicode(
        "/etc/hubgate/credentials",
        config=True,
        help="""Where the credentials Secret is mounted in each pod (read-only, files
        mode 0400); HUBGATE_CREDENTIALS_DIR points there.""",
    )

    run_as_user = Int(
        1000,
        allow_none=True,
        config=True,
        help="""The uid schedulers and workers run as in their pods (the pod's
        runAsUser); pods also get runAsNonRoot, so the kubelet refuses to run them as
        root, and their container drops every capability. 1000 is the "jovyan" user of
        the Jupyter docker-stacks images; None keeps the image's USER (which must be a
        numeric, non-root uid). Must be at least min_uid.""",
    )

    fs_group = Int(
        100,
        allow_none=True,
        config=True,
        help="""fsGroup of the pods: the kubelet gives the mounted credentials to this
        group, so a non-root image user in it can read them. 100 is the "users" group of
        the Jupyter docker-stacks images; None leaves the pod's securityContext unset.""",
    )

    cluster_domain = Unicode(
        "cluster.local",
        config=True,
        help="DNS domain of the Kubernetes cluster (for <service>.<namespace>.svc.<domain>).",
    )

    termination_grace_seconds = Int(
        30,
        config=True,
        help="""Seconds a pod has to exit after SIGTERM before it is killed (its
        terminationGracePeriodSeconds). Workers hand their data over in that time.""",
    )

    stop_timeout = Float(
        120,
        config=True,
        help="""Seconds stop() waits for a deleted pod to disappear before forcing its
        deletion (grace period 0).""",
    )

    request_timeout = Float(
        30,
        config=True,
        help="Seconds before a single Kubernetes API request (not the watch) is abandoned.",
    )

    max_concurrent_starts = Int(
        20,
        config=True,
        help="""Pods being created at once (each a pod, a Secret and, for a scheduler,
        a Service); more starts wait their turn. Without a bound a burst of creates
        (1,000 clusters) put every start's requests in one queue, so each start took
        as long as the whole burst and the API server's answers for clusters that had
        started already waited behind it.""",
    )

    @validate("max_concurrent_starts")
    def _at_least_one_start(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TraitError(
                f"KubernetesBackend.max_concurrent_starts must be at least 1, "
                f"got {proposal['value']}"
            )
        return proposal["value"]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api: Any = None
        self._core: Any = None
        self._reflector: PodReflector | None = None
        self._start_slots: asyncio.Semaphore | None = None
        # pod name -> (the watch's dict of the pod, its status)
        self._statuses: dict[str, tuple[dict[str, Any], ProcessStatus]] = {}

    @staticmethod
    def _in_cluster() -> bool:
        return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (_SA_DIR / "token").exists()

    # -- lifecycle ------------------------------------------------------------------

    async def setup(self) -> None:
        from kubernetes_asyncio import client, config

        if self.run_as_user is not None and self.run_as_user < self.min_uid:
            raise BackendError(
                f"KubernetesBackend.run_as_user = {self.run_as_user} is below min_uid "
                f"({self.min_uid}): users' pods never run as root or a system account"
            )
        configuration = client.Configuration()
        if self.kubeconfig or not self._in_cluster():
            await config.load_kube_config(
                config_file=self.kubeconfig or None, client_configuration=configuration
            )
        else:
            config.load_incluster_config(client_configuration=configuration)
        self._api = client.ApiClient(configuration)
        self._core = client.CoreV1Api(self._api)
        self._reflector = PodReflector(self._core, self.namespace, f"{LABEL_APP}=hubgate", self.log)
        self._reflector.start()

    async def cleanup(self) -> None:
        if self._reflector is not None:
            await self._reflector.stop()
            self._reflector = None
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def _cache(self) -> PodReflector:
        if self._reflector is None:
            raise BackendError("the Kubernetes backend is not set up (setup() was not called)")
        try:
            await asyncio.wait_for(asyncio.shield(self._reflector.first_load), 60)
        except TimeoutError:
            raise BackendError(
                "hubgate cannot list pods in Kubernetes right now; try again in a minute"
            ) from None
        return self._reflector

    # -- start ------------------------------------------------------------------------

    def pod_name(self, spec: ProcessSpec) -> str:
        if spec.role == "scheduler":
            return object_name("hubgate", spec.cluster_name, "scheduler")
        return object_name("hubgate", spec.cluster_name, "worker", spec.name)

    def _placement(self, spec: ProcessSpec) -> tuple[dict[str, str], tuple[dict[str, Any], ...]]:
        node_selector = dict(self.node_selector)
        tolerations = [dict(t) for t in self.tolerations]
        instance_type = spec.resources.get("instance_type")
        if instance_type:
            if instance_type not in self.instance_types:
                known = ", ".join(sorted(self.instance_types)) or "none are configured"
                raise BackendError(
                    f"unknown instance type {instance_type!r}; choose one of: {known}"
                )
            choice = self.instance_types[instance_type] or {}
            node_selector.update(choice.get("node_selector") or {})
            tolerations += [dict(t) for t in choice.get("tolerations") or []]
        return node_selector, tuple(tolerations)

    def _process(self, spec: ProcessSpec) -> KubeProcess:
        image = spec.resources.get("image") or self.image
        if not image:
            raise BackendError(
                "no container image is configured for Dask clusters; choose an image in "
                "the cluster options or ask your administrator to set "
                "KubernetesBackend.image"
            )
        name = self.pod_name(spec)
        command = list(spec.argv)
        if spec.setup:
            # The setup snippet runs in the same shell, then argv replaces that shell.
            command = ["/bin/sh", "-c", f'{spec.setup}\nexec "$@"', "hubgate-setup", *command]
        env = dict(spec.env)
        field_env: dict[str, str] = {}
        env["HUBGATE_CREDENTIALS_DIR"] = self.credentials_mount_path
        env["HUBGATE_LISTEN_HOST"] = self.listen_host
        if spec.role == "scheduler":
            env["HUBGATE_ADVERTISE_HOST"] = service_dns_name(
                name, self.namespace, self.cluster_domain
            )
            env["HUBGATE_SCHEDULER_PORT"] = str(SCHEDULER_PORT)
            env["HUBGATE_DASHBOARD_PORT"] = str(DASHBOARD_PORT)
        else:
            env.pop("HUBGATE_ADVERTISE_HOST", None)
            field_env["HUBGATE_ADVERTISE_HOST"] = "status.podIP"
        node_selector, tolerations = self._placement(spec)
        return KubeProcess(
            name=name,
            namespace=self.namespace,
            cluster_name=spec.cluster_name,
            username=spec.username,
            role=spec.role,
            process_name=spec.name,
            image=image,
            command=command,
            env=env,
            field_env=field_env,
            files=dict(spec.files),
            credentials_path=self.credentials_mount_path,
            cores=spec.cores,
            memory=spec.memory,
            cpu_limit_ratio=self.cpu_limit_ratio,
            image_pull_policy=self.image_pull_policy or None,
            image_pull_secrets=tuple(self.image_pull_secrets),
            service_account=self.service_account or None,
            node_selector=node_selector,
            tolerations=tolerations,
            fs_group=self.fs_group,
            run_as_user=self.run_as_user,
            termination_grace_seconds=self.termination_grace_seconds,
            extra_labels={str(k): str(v) for k, v in self.extra_labels.items()},
            extra_annotations={str(k): str(v) for k, v in self.extra_annotations.items()},
        )

    def _api_error(self, what: str, exc: Exception, *, quote: bool = True) -> BackendError:
        """The user's error for a failed API call; the operator's detail goes to the log.
        ``quote=False`` for calls whose refusal may echo what the user must not read
        (a Secret's contents): the message then gives only the status."""
        from kubernetes_asyncio.client.exceptions import ApiException

        if isinstance(exc, ApiException):
            message = exc.reason or ""
            try:
                message = json.loads(exc.body or "{}").get("message") or message
            except (ValueError, AttributeError):
                pass
            self.log.error("Kubernetes refused to %s: %s %s", what, exc.status, message)
            if exc.status == 403 and "quota" not in message:
                return BackendError(
                    f"hubgate is not allowed to {what} in namespace {self.namespace!r}; "
                    "ask your administrator to check hubgate's Role"
                )
            if not quote:
                return BackendError(
                    f"Kubernetes could not {what} (HTTP {exc.status}); an administrator "
                    "can find why in the service log"
                )
            return BackendError(f"Kubernetes could not {what}: {message[:_API_MESSAGE_CHARS]}")
        self.log.error("Kubernetes API call to %s failed: %r", what, exc)
        return BackendError(f"hubgate could not reach Kubernetes to {what}; try again in a minute")

    async def _create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create ``body``; return the API server's copy (as JSON)."""
        create = {
            "pod": self._core.create_namespaced_pod,
            "service": self._core.create_namespaced_service,
            "secret": self._core.create_namespaced_secret,
        }[kind]
        resp = await create(
            self.namespace, body, _preload_content=False, _request_timeout=self.request_timeout
        )
        async with resp:
            return json.loads(await resp.read())

    async def _create_owned(self, kind: str, body: dict[str, Any], owner_uid: str) -> None:
        """Create an object owned by a new pod. One left over from an earlier pod of the
        same name (the garbage collector has not removed it yet) is replaced."""
        from kubernetes_asyncio.client.exceptions import ApiException

        name = body["metadata"]["name"]
        for _ in range(10):
            try:
                await self._create(kind, body)
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
            delete = {
                "service": self._core.delete_namespaced_service,
                "secret": self._core.delete_namespaced_secret,
            }[kind]
            try:
                await delete(name, self.namespace, _request_timeout=self.request_timeout)
            except ApiException as exc:
                if exc.status != 404:
                    raise
            await asyncio.sleep(0.2)
        raise BackendError(f"a stale {kind} {name} is in the way; try again in a minute")

    async def _scheduler_owner(self, spec: ProcessSpec) -> OwnerRef:
        cache = await self._cache()
        cluster = escape_label_value(spec.cluster_name)
        pods = cache.find(
            lambda p: (
                p["metadata"].get("labels", {}).get(LABEL_CLUSTER) == cluster
                and p["metadata"]["labels"].get(LABEL_ROLE) == "scheduler"
                and pod_status(p).alive
                and not p["metadata"].get("deletionTimestamp")
            )
        )
        if not pods:
            raise BackendError(
                f"the scheduler of cluster {spec.cluster_name} is not running, so no "
                "worker can join it; start a new cluster"
            )
        meta = pods[0]["metadata"]
        return OwnerRef(name=meta["name"], uid=meta["uid"])

    async def start(self, spec: ProcessSpec) -> ProcessState:
        if self._start_slots is None:
            self._start_slots = asyncio.Semaphore(self.max_concurrent_starts)
        async with self._start_slots:
            return await self._start(spec)

    async def _start(self, spec: ProcessSpec) -> ProcessState:
        from kubernetes_asyncio.client.exceptions import ApiException

        cache = await self._cache()
        process = self._process(spec)
        if spec.role == "worker":
            process = replace(process, owner=await self._scheduler_owner(spec))
            body = make_worker_pod(process)
        else:
            body = make_scheduler_pod(process)
        try:
            pod = await self._create("pod", body)
        except ApiException as exc:
            if exc.status == 409:
                raise BackendError(
                    f"a pod named {process.name} already exists; stop the old cluster "
                    "first or choose another name"
                ) from exc
            raise self._api_error("create a pod", exc) from exc
        except Exception as exc:
            raise self._api_error("create a pod", exc) from exc
        cache.observe_created(pod)
        uid = pod["metadata"]["uid"]
        state: ProcessState = {"pod": process.name, "namespace": self.namespace, "uid": uid}
        owned = replace(process, owner=OwnerRef(name=process.name, uid=uid))
        try:
            if spec.role == "scheduler":
                await self._create_owned("service", make_service(owned), uid)
            # Last: the pod cannot start before its Secret exists.
            await self._create_owned("secret", make_secret(owned), uid)
        except BaseException as exc:
            # Do not leave a pod waiting forever for its Secret.
            await asyncio.shield(self._delete_pod(state, grace=0))
            if isinstance(exc, BackendError | asyncio.CancelledError):
                raise
            raise self._api_error(
                f"create the {process.role}'s service or secret", exc, quote=False
            ) from exc
        self.log.info("Started pod %s/%s for %s", self.namespace, process.name, spec.name)
        return state

    # -- poll ------------------------------------------------------------------------

    async def poll(self, states: list[ProcessState]) -> list[ProcessStatus]:
        cache = await self._cache()
        result = []
        for state in states:
            if state.get("namespace", self.namespace) != self.namespace:
                result.append(await self._poll_elsewhere(state))
                continue
            pod = cache.get(state["pod"], state.get("uid"))
            if pod is None:
                result.append(ProcessStatus(Phase.GONE, "the pod was deleted"))
            else:
                result.append(self._status_of(pod))
        if len(self._statuses) > 2 * len(cache.pods) + 100:
            self._statuses = {n: v for n, v in self._statuses.items() if n in cache.pods}
        return result

    def _status_of(self, pod: dict[str, Any]) -> ProcessStatus:
        """``pod_status``, worked out once per version of the pod: the watch replaces a
        pod's dict when it changes, and the manager polls every cluster every second
        (1,000 idle clusters: the poll was a third of an idle service's work)."""
        name = pod["metadata"]["name"]
        seen = self._statuses.get(name)
        if seen is not None and seen[0] is pod:
            return seen[1]
        status = pod_status(pod)
        self._statuses[name] = (pod, status)
        return status

    async def _poll_elsewhere(self, state: ProcessState) -> ProcessStatus:
        """A pod outside the watched namespace (the namespace setting changed)."""
        pod = await self._read_pod(state)
        if pod is None:
            return ProcessStatus(Phase.GONE, "the pod was deleted")
        return pod_status(pod)

    async def _read_pod(self, state: ProcessState) -> dict[str, Any] | None:
        """The pod as the API server has it now (not the watch's copy); None when it is
        gone or another pod has its name."""
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            resp = await self._core.read_namespaced_pod(
                state["pod"],
                state.get("namespace", self.namespace),
                _preload_content=False,
                _request_timeout=self.request_timeout,
            )
            async with resp:
                pod = json.loads(await resp.read())
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._api_error("read a pod", exc) from exc
        if state.get("uid") and pod["metadata"].get("uid") != state["uid"]:
            return None
        return pod

    # -- stop ------------------------------------------------------------------------

    async def _delete_pod(self, state: ProcessState, grace: int | None = None) -> bool:
        """Ask for the pod's deletion; False when it is already gone."""
        from kubernetes_asyncio.client import V1DeleteOptions, V1Preconditions
        from kubernetes_asyncio.client.exceptions import ApiException

        options = V1DeleteOptions(
            propagation_policy="Background",
            grace_period_seconds=grace,
            # Never delete a newer pod that happens to have the same name.
            preconditions=V1Preconditions(uid=state["uid"]) if state.get("uid") else None,
        )
        try:
            await self._core.delete_namespaced_pod(
                state["pod"],
                state.get("namespace", self.namespace),
                body=options,
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            if exc.status in (404, 409):  # gone, or the name is another pod's now
                return False
            raise
        return True

    async def stop(self, state: ProcessState) -> None:
        try:
            deleting = await self._delete_pod(state)
        except Exception as exc:
            raise self._api_error("delete a pod", exc) from exc
        if not deleting or state.get("namespace", self.namespace) != self.namespace:
            return
        cache = await self._cache()

        def gone() -> bool:
            return cache.get(state["pod"], state.get("uid")) is None

        if await cache.wait_for(gone, self.stop_timeout):
            return
        self.log.warning("Pod %s did not go away in %ss: forcing", state["pod"], self.stop_timeout)
        try:
            await self._delete_pod(state, grace=0)
        except Exception as exc:
            raise self._api_error("delete a pod", exc) from exc
        if not await cache.wait_for(gone, 30):
            self.log.error("Pod %s is still listed after a forced deletion", state["pod"])

    # -- addresses -------------------------------------------------------------------

    async def route_host(self, state: ProcessState) -> str:
        """The scheduler pod's IP as the API server reports it (the watch may lag the
        scheduler's first report by a moment)."""
        if state.get("namespace", self.namespace) != self.namespace:
            raise BackendError(
                f"the scheduler pod {state.get('pod')} is in namespace "
                f"{state.get('namespace')!r}, which this service no longer watches"
            )
        cache = await self._cache()

        def pod_ip() -> str:
            pod = cache.get(state["pod"], state.get("uid"))
            return str(((pod or {}).get("status") or {}).get("podIP") or "")

        if await cache.wait_for(lambda: bool(pod_ip()), POD_IP_WAIT):
            ip = pod_ip()
        else:
            # The watch can lag far behind a burst of creates (1,000 clusters at once):
            # ask the API server itself before failing a scheduler that said hello.
            pod = await self._read_pod(state)
            ip = str(((pod or {}).get("status") or {}).get("podIP") or "")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise BackendError(
                f"Kubernetes reports no IP address for the scheduler pod {state.get('pod')}"
            ) from None
        return ip

    # -- logs ------------------------------------------------------------------------

    async def read_log(self, state: ProcessState, max_lines: int = 50) -> str | None:
        from kubernetes_asyncio.client.exceptions import ApiException

        namespace = state.get("namespace", self.namespace)
        if namespace == self.namespace:
            cache = await self._cache()
            if cache.get(state["pod"], state.get("uid")) is None:
                return None
        try:
            return await self._core.read_namespaced_pod_log(
                state["pod"],
                namespace,
                container=CONTAINER_NAME,
                tail_lines=max_lines,
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 400:  # the container has not started yet
                return ""
            raise self._api_error("read a pod's log", exc) from exc
        except Exception as exc:
            raise self._api_error("read a pod's log", exc) from exc


# The fields of a Kubernetes toleration (core/v1 Toleration) and of an instance type.
TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")
PLACEMENT_KEYS = ("node_selector", "tolerations")


def _check_toleration(toleration: Any, where: str) -> None:
    """A toleration as the pod spec takes it; a typo would make every pod unschedulable
    or be dropped by the API server, so it stops the service at start instead."""
    if not isinstance(toleration, dict):
        raise TraitError(f"{where} must be a mapping of {', '.join(TOLERATION_KEYS)}")
    unknown = [k for k in toleration if k not in TOLERATION_KEYS]
    if unknown:
        raise TraitError(unknown_keys_message(where, unknown, TOLERATION_KEYS))


def _check_placement(placement: Any, where: str) -> None:
    """One entry of instance_types: ``{"node_selector": {...}, "tolerations": [...]}``."""
    if placement is None:
        return
    if not isinstance(placement, dict):
        raise TraitError(f"{where} must be a mapping of {', '.join(PLACEMENT_KEYS)}")
    unknown = [k for k in placement if k not in PLACEMENT_KEYS]
    if unknown:
        raise TraitError(unknown_keys_message(where, unknown, PLACEMENT_KEYS))
    selector = placement.get("node_selector") or {}
    if not isinstance(selector, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in selector.items()
    ):
        raise TraitError(
            f"{where}['node_selector'] must map label names to label values (strings), "
            f"got {selector!r}"
        )
    tolerations = placement.get("tolerations") or []
    if not isinstance(tolerations, list | tuple):
        raise TraitError(f"{where}['tolerations'] must be a list, got {tolerations!r}")
    for index, toleration in enumerate(tolerations):
        _check_toleration(toleration, f"{where}['tolerations'][{index}]")
