"""The stand-in's one "node": schedules pods and runs each as a local process.

What a real scheduler + kubelet do, reduced to what hubgate's backend relies on:

- scheduling: a pod whose nodeSelector the node's labels do not satisfy stays Pending
  with ``PodScheduled=False, reason=Unschedulable``;
- ContainerCreating until every Secret volume's Secret exists; images listed as
  unpullable give ``ErrImagePull`` then ``ImagePullBackOff``;
- the container's ``command + args`` run as a local process with the pod's env;
  Running, then Succeeded/Failed with the exit code (``128 + signal`` when killed) and,
  with ``terminationMessagePolicy: FallbackToLogsOnError``, the log's tail as message;
- deletion: SIGTERM to the process group, SIGKILL after the grace period (capped low
  for tests), then the pod object is removed.

Stand-in limitations (there are no containers or network namespaces here): every pod
shares this machine's filesystem and network. Each pod gets its own loopback address
(127.x.y.z) as pod IP, and the kubelet rewrites three kinds of env values so a pod's
process behaves as it would in a cluster:

- a value starting with a Secret volume's mount path gets the temp folder holding that
  Secret's files instead (the files cannot be mounted at the real path);
- ``HUBGATE_LISTEN_HOST=0.0.0.0`` becomes the pod IP, so two pods can both listen on
  port 8786 as they would in their own network namespaces;
- a Service DNS name (``<svc>.<ns>.svc.cluster.local``, ``<svc>.<ns>.svc``) anywhere in
  a value becomes the IP of the pod the Service selects (there is no cluster DNS), which
  also turns ``HUBGATE_ADVERTISE_HOST`` into the pod IP.

With ``agent_only_pods`` (for bench/scale.py's 1,000 clusters, which as real schedulers
would not fit in this machine's memory) a pod whose container has ``HUBGATE_AGENT_URL``
in its env runs no process: the kubelet itself speaks the scheduler agent's side of the
protocol for it (token from the Secret volume, ``hello`` with the fixed ports, pings,
reconnects; ``close`` ends the "container" with exit code 0). Nothing listens on the
scheduler's port: such a cluster is RUNNING to the service but cannot compute.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .store import Event, NotFound, Store, now_iso

__all__ = ["NODE_NAME", "StandInKubelet"]

NODE_NAME = "stand-in-node"
# Environment a container image would provide; nothing else leaks from the host.
_BASE_ENV = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
_TERMINATION_LOG_BYTES = 2048
_TERMINATION_LOG_LINES = 80


def _service_dns(namespace: str) -> re.Pattern[str]:
    """``<svc>.<namespace>.svc`` (and ``.cluster.local``) in a text; group 1: the name."""
    return re.compile(rf"([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.{re.escape(namespace)}\.svc\b")


class _PodRun:
    def __init__(self, namespace: str, name: str, uid: str) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.task: asyncio.Task[None] | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self.started = False
        self.deleting = asyncio.Event()


class StandInKubelet:
    def __init__(
        self,
        store: Store,
        workdir: Path,
        *,
        node_labels: dict[str, str] | None = None,
        unpullable_images: set[str] | None = None,
        max_grace_seconds: float = 5.0,
        agent_only_pods: bool = False,
    ) -> None:
        self.store = store
        self.agent_only_pods = agent_only_pods
        self.workdir = workdir
        self.node_labels = {
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **(node_labels or {}),
        }
        self.unpullable_images = unpullable_images or set()
        self.max_grace_seconds = max_grace_seconds
        self.runs: dict[str, _PodRun] = {}  # by pod uid
        # Each stand-in instance takes its own 127.a.b.0/24 so concurrent test runs on
        # one machine do not hand out the same pod IPs.
        self._ip_prefix = f"127.{random.randint(16, 250)}.{random.randint(0, 255)}"
        self._next_ip = 2
        self.pod_ips: dict[str, str] = {}  # uid -> ip
        store.listeners.append(self._on_event)

    # -- events -------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.resource != "pods":
            return
        uid = event.object["metadata"]["uid"]
        if event.type == "ADDED":
            run = _PodRun(event.namespace, event.object["metadata"]["name"], uid)
            self.runs[uid] = run
            run.task = asyncio.get_running_loop().create_task(self._run(run))
        elif event.type == "DELETED":
            run = self.runs.pop(uid, None)
            if run is not None:
                run.deleting.set()
                if run.process is None and run.task is not None:
                    run.task.cancel()

    # -- helpers ------------------------------------------------------------------

    def _update(self, run: _PodRun, mutate: Any) -> dict[str, Any] | None:
        try:
            return self.store.update("pods", run.namespace, run.name, mutate)
        except NotFound:
            return None

    def _pod(self, run: _PodRun) -> dict[str, Any] | None:
        try:
            pod = self.store.get("pods", run.namespace, run.name)
        except NotFound:
            return None
        return pod if pod["metadata"]["uid"] == run.uid else None

    def _alloc_ip(self, uid: str) -> str:
        ip = f"{self._ip_prefix}.{self._next_ip}"
        self._next_ip += 1
        if self._next_ip > 254:
            self._prefix_wrap()
        self.pod_ips[uid] = ip
        return ip

    def _prefix_wrap(self) -> None:
        self._ip_prefix = f"127.{random.randint(16, 250)}.{random.randint(0, 255)}"
        self._next_ip = 2

    @staticmethod
    def _container_status(container: dict[str, Any], state: dict[str, Any], **extra: Any):
        return {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "ready": "running" in state,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
            **extra,
        }

    def _set_waiting(self, run: _PodRun, reason: str, message: str = "") -> None:
        def mutate(pod: dict[str, Any]) -> None:
            waiting = {"reason": reason}
            if message:
                waiting["message"] = message
            pod["status"]["containerStatuses"] = [
                self._container_status(c, {"waiting": waiting}) for c in pod["spec"]["containers"]
            ]

        self._update(run, mutate)

    # -- the pod's life -----------------------------------------------------------

    async def _run(self, run: _PodRun) -> None:
        try:
            await self._run_pod(run)
        except asyncio.CancelledError:
            pass
        finally:
            if run.process is not None and run.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.process.pid, signal.SIGKILL)
            if run.workdir is not None:
                shutil.rmtree(run.workdir / "volumes", ignore_errors=True)

    async def _run_pod(self, run: _PodRun) -> None:
        await asyncio.sleep(0)  # let the create response go out first
        pod = self._pod(run)
        if pod is None:
            return
        spec = pod["spec"]
        # 1. schedule
        selector = spec.get("nodeSelector") or {}
        if any(self.node_labels.get(k) != v for k, v in selector.items()):

            def unschedulable(p: dict[str, Any]) -> None:
                p["status"]["conditions"] = [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/1 nodes are available: 1 node(s) didn't match "
                        "Pod's node affinity/selector.",
                        "lastTransitionTime": now_iso(),
                        "lastProbeTime": None,
                    }
                ]

            self._update(run, unschedulable)
            await run.deleting.wait()
            return

        def scheduled(p: dict[str, Any]) -> None:
            p["spec"]["nodeName"] = NODE_NAME
            p["status"].update(
                hostIP="127.0.0.1",
                hostIPs=[{"ip": "127.0.0.1"}],
                startTime=now_iso(),
                conditions=[
                    {"type": t, "status": s, "lastTransitionTime": now_iso(), "lastProbeTime": None}
                    for t, s in (
                        ("PodReadyToStartContainers", "False"),
                        ("Initialized", "True"),
                        ("Ready", "False"),
                        ("ContainersReady", "False"),
                        ("PodScheduled", "True"),
                    )
                ],
                containerStatuses=[
                    self._container_status(c, {"waiting": {"reason": "ContainerCreating"}})
                    for c in p["spec"]["containers"]
                ],
            )

        self._update(run, scheduled)
        # 2. volumes: wait for the Secrets (the real kubelet retries FailedMount)
        secret_names = [
            v["secret"]["secretName"] for v in spec.get("volumes") or [] if "secret" in v
        ]
        while True:
            missing = [
                n for n in secret_names if ("secrets", run.namespace, n) not in self.store.objects
            ]
            if not missing:
                break
            await asyncio.sleep(0.1)
            if self._pod(run) is None:
                return
        # 3. image
        container = spec["containers"][0]
        if container.get("image") in self.unpullable_images:
            image = container["image"]
            self._set_waiting(run, "ErrImagePull", f'failed to pull image "{image}": not found')
            await asyncio.sleep(0.5)
            self._set_waiting(
                run, "ImagePullBackOff", f'Back-off pulling image "{image}": not found'
            )
            await run.deleting.wait()
            return
        # 4. start the container
        pod = self._pod(run)
        if pod is None:
            return
        ip = self._alloc_ip(run.uid)
        run.workdir = Path(tempfile.mkdtemp(prefix=f"{run.name}-", dir=self.workdir))
        run.log_path = run.workdir / "container.log"
        env = self._container_env(pod, container, ip, run.workdir)
        if self.agent_only_pods and env.get("HUBGATE_AGENT_URL"):
            await self._run_agent_only(run, env, ip)
            return
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        log_file = await asyncio.to_thread(open, run.log_path, "wb")
        try:
            run.process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                cwd=container.get("workingDir") or run.workdir,
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            self._terminate_status(run, 128, None, "StartError", f"failed to start: {exc}")
            return
        finally:
            if run.process is not None:
                log_file.close()
        run.started = True
        started_at = now_iso()
        self._set_running(run, ip, started_at)
        returncode = await run.process.wait()
        code, sig = (returncode, None) if returncode >= 0 else (128 - returncode, -returncode)
        message = ""
        if code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = self._log_tail(run)
        reason = "Completed" if code == 0 else "Error"
        self._terminate_status(run, code, sig, reason, message, started_at)

    def _set_running(self, run: _PodRun, ip: str, started_at: str) -> None:
        def running(p: dict[str, Any]) -> None:
            p["status"]["phase"] = "Running"
            p["status"]["podIP"] = ip
            p["status"]["podIPs"] = [{"ip": ip}]
            for cond in p["status"]["conditions"]:
                cond["status"] = "True"
            p["status"]["containerStatuses"] = [
                self._container_status(c, {"running": {"startedAt": started_at}})
                for c in p["spec"]["containers"]
            ]

        self._update(run, running)

    async def _run_agent_only(self, run: _PodRun, env: dict[str, str], ip: str) -> None:
        """The pod "runs" as long as its agent conversation: no process, no scheduler."""
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        from hubgate.runtime.scheduler_agent import PING_INTERVAL  # as a real agent pings

        assert run.workdir is not None and run.log_path is not None
        run.log_path.write_text("agent-only pod: no scheduler process (stand-in)\n")
        run.started = True
        started_at = now_iso()
        self._set_running(run, ip, started_at)
        credentials = Path(env["HUBGATE_CREDENTIALS_DIR"])
        token = (credentials / "token").read_text().strip()
        ca_file = credentials / "agent-ca.pem"
        name = env["HUBGATE_CLUSTER_NAME"]
        sep = "&" if "?" in env["HUBGATE_AGENT_URL"] else "?"
        url = env["HUBGATE_AGENT_URL"] + sep + urlencode({"cluster": name})
        dashboard = env.get("HUBGATE_DASHBOARD_PORT")
        hello = {
            "type": "hello",
            "cluster": name,
            "scheduler_port": int(env.get("HUBGATE_SCHEDULER_PORT") or 8786),
            "dashboard_port": int(dashboard) if dashboard else None,
            "workers": [],
            "versions": {},
        }
        backoff = 0.1
        while True:
            try:
                conn = await websocket_connect(
                    HTTPRequest(
                        url,
                        headers={"Authorization": f"token {token}"},
                        connect_timeout=10,
                        request_timeout=10,
                        ca_certs=str(ca_file) if ca_file.exists() else None,
                    ),
                    ping_interval=PING_INTERVAL,
                )
            except Exception:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            try:
                await conn.write_message(json.dumps(hello))
                while (text := await conn.read_message()) is not None:
                    if json.loads(text).get("op") == "close":
                        self._terminate_status(run, 0, None, "Completed", "", started_at)
                        return
            except Exception:
                pass
            finally:
                conn.close()
            await asyncio.sleep(0.1)

    def _terminate_status(
        self,
        run: _PodRun,
        code: int,
        sig: int | None,
        reason: str,
        message: str,
        started_at: str | None = None,
    ) -> None:
        def terminated(p: dict[str, Any]) -> None:
            state: dict[str, Any] = {
                "exitCode": code,
                "reason": reason,
                "startedAt": started_at,
                "finishedAt": now_iso(),
                "containerID": "",
            }
            if sig is not None:
                state["signal"] = sig
            if message:
                state["message"] = message
            p["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
            p["status"]["containerStatuses"] = [
                self._container_status(c, {"terminated": state}) for c in p["spec"]["containers"]
            ]
            for cond in p["status"].get("conditions") or []:
                if cond["type"] in ("Ready", "ContainersReady"):
                    cond["status"] = "False"
                    cond["reason"] = "PodCompleted"

        pod = self._update(run, terminated)
        if pod is not None and pod["metadata"].get("deletionTimestamp"):
            # A pod being deleted disappears once its containers have stopped.
            with contextlib.suppress(NotFound):
                self.store.remove("pods", run.namespace, run.name)

    def _log_tail(self, run: _PodRun) -> str:
        if run.log_path is None:
            return ""
        data = run.log_path.read_bytes()[-_TERMINATION_LOG_BYTES:]
        lines = data.decode("utf-8", "replace").splitlines()[-_TERMINATION_LOG_LINES:]
        return "\n".join(lines)

    def _service_ips(
        self, namespace: str, values: list[str], own_labels: dict[str, str], own_ip: str
    ) -> dict[str, str]:
        """DNS name -> IP of the pod the Service selects (the stand-in has no DNS), for
        the Services that ``values`` name; a Service selecting this pod itself gets
        ``own_ip`` (the pod is not listed with an IP yet when it starts). Only the named
        Services are looked up: scanning every Service and pod for every pod start made
        the stand-in quadratic in the number of clusters."""
        names: dict[str, str] = {}
        wanted = {m.group(1) for m in _service_dns(namespace).finditer(" ".join(values))}
        pods: list[dict[str, Any]] | None = None
        for name in sorted(wanted):
            try:
                svc = self.store.get("services", namespace, name)
            except NotFound:
                continue
            selector = svc["spec"].get("selector") or {}
            if not selector:
                continue
            ip = None
            if all(own_labels.get(k) == v for k, v in selector.items()):
                ip = own_ip
            else:
                if pods is None:
                    pods = self.store.find("pods", namespace)
                for pod in pods:
                    labels = pod["metadata"].get("labels") or {}
                    pod_ip = self.pod_ips.get(pod["metadata"]["uid"])
                    if pod_ip and all(labels.get(k) == v for k, v in selector.items()):
                        ip = pod_ip
                        break
            if ip:
                for dns in (f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc"):
                    names[dns] = ip
        return names

    def _container_env(
        self, pod: dict[str, Any], container: dict[str, Any], ip: str, workdir: Path
    ) -> dict[str, str]:
        env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
        env["HOSTNAME"] = pod["metadata"]["name"]
        # Materialise each Secret volume; remember mount path -> folder.
        mounts: dict[str, str] = {}
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            if "secret" not in volume:
                continue
            secret = self.store.get(
                "secrets", pod["metadata"]["namespace"], volume["secret"]["secretName"]
            )
            folder = workdir / "volumes" / mount["name"]
            folder.mkdir(parents=True, mode=0o700)
            os.chmod(folder, 0o700)
            mode = volume["secret"].get("defaultMode", 0o644)
            for key, value in (secret.get("data") or {}).items():
                path = folder / key
                path.write_bytes(base64.b64decode(value))
                os.chmod(path, mode)
            mounts[mount["mountPath"].rstrip("/")] = str(folder)
        fields = {
            "status.podIP": ip,
            "metadata.name": pod["metadata"]["name"],
            "metadata.namespace": pod["metadata"]["namespace"],
            "metadata.uid": pod["metadata"]["uid"],
            "spec.nodeName": NODE_NAME,
            "status.hostIP": "127.0.0.1",
        }
        values = [str(item.get("value", "")) for item in container.get("env") or []]
        services = self._service_ips(
            pod["metadata"]["namespace"], values, pod["metadata"].get("labels") or {}, ip
        )
        dns_pattern = (
            re.compile("|".join(re.escape(n) for n in sorted(services, key=len, reverse=True)))
            if services
            else None
        )
        for item in container.get("env") or []:
            if "value" in item:
                value = str(item["value"])
            elif "valueFrom" in item and "fieldRef" in item["valueFrom"]:
                value = fields.get(item["valueFrom"]["fieldRef"]["fieldPath"], "")
            else:
                continue
            # Stand-in limitation: Secret volumes live in a temp folder, not at their
            # mount path, so values pointing into a mount path are redirected.
            for mount_path, folder in mounts.items():
                if value == mount_path or value.startswith(mount_path + "/"):
                    value = folder + value[len(mount_path) :]
            if dns_pattern is not None:
                value = dns_pattern.sub(lambda m: services[m.group(0)], value)
            env[item["name"]] = value
        if env.get("HUBGATE_LISTEN_HOST") == "0.0.0.0":
            env["HUBGATE_LISTEN_HOST"] = ip  # one loopback address per "pod"
        return env

    # -- API surface used by the server -------------------------------------------

    def read_log(self, pod: dict[str, Any], tail_lines: int | None) -> str | None:
        """The container's log, or None when the container has not started."""
        run = self.runs.get(pod["metadata"]["uid"])
        if run is None or run.log_path is None or not run.log_path.exists():
            return None
        lines = run.log_path.read_bytes().decode("utf-8", "replace").splitlines(keepends=True)
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines > 0 else []
        return "".join(lines)

    def delete_pod(self, namespace: str, name: str, grace: float) -> dict[str, Any]:
        """Start a graceful deletion; the pod object goes once its process has ended."""
        pod = self.store.get("pods", namespace, name)
        run = self.runs.get(pod["metadata"]["uid"])
        if run is None or run.process is None or run.process.returncode is not None or grace <= 0:
            if run is not None and run.process is not None and run.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.process.pid, signal.SIGKILL)
            return self.store.remove("pods", namespace, name)

        def mark(p: dict[str, Any]) -> None:
            p["metadata"]["deletionTimestamp"] = now_iso()
            p["metadata"]["deletionGracePeriodSeconds"] = int(grace)

        if pod["metadata"].get("deletionTimestamp"):
            return pod
        updated = self.store.update("pods", namespace, name, mark)
        asyncio.get_running_loop().create_task(self._kill(run, min(grace, self.max_grace_seconds)))
        return updated

    async def _kill(self, run: _PodRun, grace: float) -> None:
        process = run.process
        assert process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    async def shutdown(self) -> None:
        """Kill every pod process (the stand-in is going away)."""
        for run in list(self.runs.values()):
            if run.process is not None and run.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.process.pid, signal.SIGKILL)
            if run.task is not None:
                run.task.cancel()
        tasks = [r.task for r in self.runs.values() if r.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
