"""A stand-in Kubernetes API server (tornado), for tests on machines without Kubernetes.

It speaks the real REST API, with the real JSON shapes, for the part hubgate's backend
uses: pods, services and secrets in ``/api/v1/namespaces/{ns}/...`` (create, get, list,
delete, ``?watch=1``), ``resourceVersion`` (one counter; list returns it, watch resumes
from it, a compacted one gives a 410 ``ERROR`` event as the real server sends), label
selectors, owner-reference garbage collection (background and orphan), pod logs
(``/log?tailLines=N``), ``metadata.uid``/``creationTimestamp``/``deletionTimestamp``, and
pod status driven by the processes :mod:`.kubelet` runs. Requests need the bearer token
of the kubeconfig it writes.

Not a Kubernetes: namespaces exist implicitly, there is no admission, quota, RBAC or
field validation beyond the basics, and containers are local processes (see
:mod:`.kubelet` for how that shapes pod env). Extra endpoint for tests:
``POST /stand-in/compact`` forgets the event history and ends every watch.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import socket
from pathlib import Path
from typing import Any

import yaml
from tornado import httpserver, web
from tornado.iostream import StreamClosedError

from .kubelet import StandInKubelet
from .selectors import SelectorError, parse_label_selector
from .store import KINDS, Conflict, Gone, NotFound, Store

__all__ = ["StandInApiServer"]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GC_DELAY = 0.05  # the garbage collector runs shortly after, not inside, a deletion


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class _Base(web.RequestHandler):
    api: StandInApiServer

    def initialize(self, api: StandInApiServer) -> None:
        self.api = api

    def prepare(self) -> None:
        if self.request.headers.get("Authorization") != f"Bearer {self.api.token}":
            self.fail(401, "Unauthorized", "Unauthorized")

    def fail(self, code: int, reason: str, message: str, **details: Any) -> None:
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(status_body(code, reason, message, **details)))

    def send(self, obj: dict[str, Any], code: int = 200) -> None:
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))

    def body_json(self) -> dict[str, Any] | None:
        if not self.request.body:
            return None
        try:
            return json.loads(self.request.body)
        except ValueError:
            self.fail(400, "BadRequest", "the request body is not JSON")
            raise web.Finish() from None

    def resource_kind(self, resource: str) -> str:
        if resource not in KINDS:
            self.fail(404, "NotFound", "the server could not find the requested resource")
            raise web.Finish()
        return KINDS[resource]


class CollectionHandler(_Base):
    """``/api/v1/namespaces/{ns}/{resource}`` and ``/api/v1/{resource}``."""

    async def get(self, namespace: str | None, resource: str) -> None:
        kind = self.resource_kind(resource)
        try:
            matches = parse_label_selector(self.get_argument("labelSelector", None))
        except SelectorError as exc:
            return self.fail(400, "BadRequest", str(exc))
        if self.get_argument("watch", "") in ("1", "true", "True"):
            return await self.watch(namespace, resource, matches)
        items, rv = self.api.store.list(resource, namespace, matches)
        for item in items:  # list items carry no kind/apiVersion in the real API
            item.pop("kind", None)
            item.pop("apiVersion", None)
        self.send(
            {
                "kind": f"{kind}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            }
        )

    async def watch(self, namespace: str | None, resource: str, matches: Any) -> None:
        rv_text = self.get_argument("resourceVersion", "")
        since = int(rv_text) if rv_text not in ("", "0") else None
        timeout = float(self.get_argument("timeoutSeconds", "1800"))
        self.set_header("Content-Type", "application/json")
        try:
            watcher, replay = self.api.store.watch(resource, namespace, matches, since)
        except Gone:
            # The real API server answers 200 and sends the 410 as an ERROR event.
            gone = status_body(
                410,
                "Expired",
                f"too old resource version: {since} ({self.api.store.compacted_through})",
            )
            self.write(json.dumps({"type": "ERROR", "object": gone}) + "\n")
            return self.finish()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            for event in replay:
                self.write(json.dumps({"type": event.type, "object": event.object}) + "\n")
            await self.flush()
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                if event is None:  # compacted: end the watch
                    break
                self.write(json.dumps({"type": event.type, "object": event.object}) + "\n")
                await self.flush()
        except StreamClosedError:
            return
        finally:
            self.api.store.watchers.discard(watcher)
        with contextlib.suppress(StreamClosedError):
            self.finish()

    def post(self, namespace: str | None, resource: str) -> None:
        kind = self.resource_kind(resource)
        if namespace is None:
            return self.fail(405, "MethodNotAllowed", "create needs a namespace")
        obj = self.body_json() or {}
        if obj.get("kind") not in (None, kind):
            return self.fail(400, "BadRequest", f"expected a {kind}, got {obj.get('kind')}")
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") not in (None, namespace):
            return self.fail(
                400, "BadRequest", "the namespace of the object does not match the request's"
            )
        name = meta.get("name") or ""
        if not name and not meta.get("generateName"):
            return self.fail(422, "Invalid", f"{kind} is invalid: metadata.name: Required value")
        if name and (not _NAME.match(name) or len(name) > 253):
            return self.fail(
                422, "Invalid", f'{kind} "{name}" is invalid: metadata.name: Invalid value'
            )
        try:
            obj = getattr(self.api, f"_default_{resource}")(obj)
        except ValueError as exc:
            return self.fail(422, "Invalid", f'{kind} "{name}" is invalid: {exc}')
        try:
            created = self.api.store.create(resource, namespace, obj)
        except Conflict:
            return self.fail(
                409,
                "AlreadyExists",
                f'{resource} "{name}" already exists',
                name=name,
                kind=resource,
            )
        self.api.check_owners(resource, created)
        self.send(created, 201)


class ObjectHandler(_Base):
    """``/api/v1/namespaces/{ns}/{resource}/{name}``."""

    def get(self, namespace: str, resource: str, name: str) -> None:
        self.resource_kind(resource)
        try:
            self.send(self.api.store.get(resource, namespace, name))
        except NotFound:
            self.fail(404, "NotFound", f'{resource} "{name}" not found', name=name, kind=resource)

    def delete(self, namespace: str, resource: str, name: str) -> None:
        self.resource_kind(resource)
        options = self.body_json() or {}
        policy = options.get("propagationPolicy") or self.get_argument(
            "propagationPolicy", "Background"
        )
        if policy not in ("Background", "Orphan"):
            return self.fail(
                400, "BadRequest", f"the stand-in API server does not support {policy} deletion"
            )
        grace_arg = options.get("gracePeriodSeconds")
        if grace_arg is None and self.get_argument("gracePeriodSeconds", None) is not None:
            grace_arg = int(self.get_argument("gracePeriodSeconds"))
        try:
            current = self.api.store.get(resource, namespace, name)
        except NotFound:
            return self.fail(
                404, "NotFound", f'{resource} "{name}" not found', name=name, kind=resource
            )
        uid = (options.get("preconditions") or {}).get("uid")
        if uid and uid != current["metadata"]["uid"]:
            return self.fail(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {current['metadata']['uid']}",
                name=name,
                kind=resource,
            )
        self.send(self.api.delete(resource, namespace, name, grace_arg, policy))


class LogHandler(_Base):
    def get(self, namespace: str, name: str) -> None:
        try:
            pod = self.api.store.get("pods", namespace, name)
        except NotFound:
            return self.fail(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = self.get_argument("container", containers[0])
        if container not in containers:
            return self.fail(
                400, "BadRequest", f"container {container} is not valid for pod {name}"
            )
        tail = self.get_argument("tailLines", None)
        text = self.api.kubelet.read_log(pod, int(tail) if tail is not None else None)
        if text is None:
            waiting = ""
            for cs in pod["status"].get("containerStatuses") or []:
                waiting = (cs.get("state", {}).get("waiting") or {}).get("reason", "")
            return self.fail(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: '
                f"{waiting or 'ContainerCreating'}",
            )
        self.set_header("Content-Type", "text/plain")
        self.finish(text)


class CompactHandler(_Base):
    def post(self) -> None:
        self.api.store.compact()
        self.send({"compactedThrough": self.api.store.compacted_through})


class VersionHandler(_Base):
    def get(self) -> None:
        self.send(
            {"major": "1", "minor": "33", "gitVersion": "v1.33.0-stand-in", "platform": "linux"}
        )


class StandInApiServer:
    """The stand-in API server. ``await start()``, then use :attr:`kubeconfig`."""

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history: int = 1000,
        node_labels: dict[str, str] | None = None,
        unpullable_images: set[str] | None = None,
        max_grace_seconds: float = 5.0,
        agent_only_pods: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port
        self.token = secrets.token_hex(16)
        self.store = Store(history=history)
        self.kubelet = StandInKubelet(
            self.store,
            self.workdir,
            node_labels=node_labels,
            unpullable_images=unpullable_images,
            max_grace_seconds=max_grace_seconds,
            agent_only_pods=agent_only_pods,
        )
        self._server: httpserver.HTTPServer | None = None
        self._gc_tasks: set[asyncio.Task[None]] = set()
        self.store.listeners.append(self._on_event)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "stand-in", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "stand-in",
                    "context": {"cluster": "stand-in", "user": "stand-in", "namespace": "default"},
                }
            ],
            "current-context": "stand-in",
        }

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.kubeconfig))
        path.chmod(0o600)
        return path

    def app(self) -> web.Application:
        args = {"api": self}
        ns = r"/api/v1/namespaces/([a-z0-9-]+)"
        return web.Application(
            [
                (r"/version", VersionHandler, args),
                (rf"{ns}/pods/([^/]+)/log", LogHandler, args),
                (rf"{ns}/([a-z]+)/([^/]+)", ObjectHandler, args),
                (rf"{ns}/([a-z]+)", CollectionHandler, args),
                (r"/api/v1/()([a-z]+)", _AllNamespaces, args),
                (r"/stand-in/compact", CompactHandler, args),
            ]
        )

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._server = httpserver.HTTPServer(self.app())
        self._server.add_sockets([sock])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self.store.compact()  # ends open watches
        await self.kubelet.shutdown()
        for task in list(self._gc_tasks):
            task.cancel()

    # -- defaults the real API server fills in -----------------------------------

    def _default_pods(self, pod: dict[str, Any]) -> dict[str, Any]:
        spec = pod.get("spec") or {}
        containers = spec.get("containers") or []
        if not containers:
            raise ValueError("spec.containers: Required value")
        for c in containers:
            if not c.get("name") or not c.get("image"):
                raise ValueError("spec.containers[].name and .image: Required value")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            tag = c["image"].rsplit("/", 1)[-1]
            c.setdefault(
                "imagePullPolicy",
                "Always" if ":" not in tag or tag.endswith(":latest") else "IfNotPresent",
            )
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("securityContext", {})
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        pod["spec"] = spec
        pod["status"] = {"phase": "Pending", "qosClass": _qos_class(containers)}
        return pod

    def _default_services(self, svc: dict[str, Any]) -> dict[str, Any]:
        spec = svc.get("spec") or {}
        if not spec.get("ports"):
            raise ValueError("spec.ports: Required value")
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("clusterIP") != "None":
            # An address from the service range; nothing routes it (no kube-proxy here).
            spec["clusterIP"] = f"10.96.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
        spec["clusterIPs"] = [spec["clusterIP"]]
        for port in spec["ports"]:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port["port"])
        svc["spec"] = spec
        svc["status"] = {"loadBalancer": {}}
        return svc

    def _default_secrets(self, secret: dict[str, Any]) -> dict[str, Any]:
        data = dict(secret.get("data") or {})
        for key, value in (secret.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(value.encode()).decode()
        for key, value in data.items():
            if not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
                raise ValueError(
                    f"data[{key}]: Invalid value: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
                )
            try:
                base64.b64decode(value, validate=True)
            except ValueError:
                raise ValueError(f"data[{key}]: Invalid value: not base64") from None
        secret["data"] = data
        secret.setdefault("type", "Opaque")
        return secret

    # -- deletion and garbage collection -----------------------------------------

    def delete(
        self, resource: str, namespace: str, name: str, grace: int | None, policy: str
    ) -> dict[str, Any]:
        current = self.store.get(resource, namespace, name)
        if policy == "Orphan":
            for dependent_resource, dependent in self._dependents(current["metadata"]["uid"]):
                self._orphan(dependent_resource, dependent, current["metadata"]["uid"])
        if resource == "pods":
            if grace is None:
                grace = current["spec"].get("terminationGracePeriodSeconds", 30)
            return self.kubelet.delete_pod(namespace, name, float(grace))
        return self.store.remove(resource, namespace, name)

    def _dependents(self, uid: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (resource, obj)
            for resource in KINDS
            for obj in self.store.find(resource)
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
        ]

    def _orphan(self, resource: str, obj: dict[str, Any], uid: str) -> None:
        def strip(o: dict[str, Any]) -> None:
            refs = [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                o["metadata"]["ownerReferences"] = refs
            else:
                o["metadata"].pop("ownerReferences", None)

        meta = obj["metadata"]
        self.store.update(resource, meta["namespace"], meta["name"], strip)

    def _exists(self, uid: str) -> bool:
        return any(
            obj["metadata"]["uid"] == uid for resource in KINDS for obj in self.store.find(resource)
        )

    def check_owners(self, resource: str, obj: dict[str, Any]) -> None:
        """An object created with an owner that no longer exists is collected (as the
        real garbage collector does with dangling owner references)."""
        refs = obj["metadata"].get("ownerReferences") or []
        if refs and not any(self._exists(r.get("uid", "")) for r in refs):
            self._schedule_gc(lambda: self._collect(resource, obj))

    def _on_event(self, event: Any) -> None:
        if event.type == "DELETED":
            uid = event.object["metadata"]["uid"]
            self._schedule_gc(lambda: self._collect_dependents(uid))

    def _schedule_gc(self, action: Any) -> None:
        async def later() -> None:
            await asyncio.sleep(_GC_DELAY)
            action()

        task = asyncio.get_running_loop().create_task(later())
        self._gc_tasks.add(task)
        task.add_done_callback(self._gc_tasks.discard)

    def _collect_dependents(self, uid: str) -> None:
        for resource, obj in self._dependents(uid):
            refs = obj["metadata"].get("ownerReferences") or []
            # Only collected when no other owner remains.
            if all(r.get("uid") == uid or not self._exists(r.get("uid", "")) for r in refs):
                self._collect(resource, obj)

    def _collect(self, resource: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        try:
            current = self.store.get(resource, meta["namespace"], meta["name"])
        except NotFound:
            return
        if current["metadata"]["uid"] != meta["uid"]:
            return
        with contextlib.suppress(NotFound):
            self.delete(resource, meta["namespace"], meta["name"], None, "Background")


class _AllNamespaces(CollectionHandler):
    async def get(self, namespace: str | None, resource: str) -> None:  # type: ignore[override]
        await super().get(None, resource)

    def post(self, namespace: str | None, resource: str) -> None:  # type: ignore[override]
        self.fail(405, "MethodNotAllowed", "create needs a namespace")


def _qos_class(containers: list[dict[str, Any]]) -> str:
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(k) is not None
        and (r.get("requests") or {}).get(k, (r.get("limits") or {}).get(k))
        == (r.get("limits") or {}).get(k)
        for r in resources
        for k in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"
