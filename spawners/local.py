"""The local backend: every scheduler and worker is a process on the service's host.

Each process runs in its own session (so it outlives a restart of the service, and
stopping it stops everything it started), with its credentials in
``<work_dir>/<cluster>/<name>/`` (0700) and its output in ``<work_dir>/<cluster>/<name>.log``.
Its state is ``{"pid", "start_ticks", "log", "workdir", "exit_file"}``: the start time
from ``/proc/<pid>/stat`` tells a recycled pid from ours, so ``poll`` and ``stop`` work
from stored state alone.

The usual process, this interpreter running ``-m hubgate.cluster_process``, is forked
from a fork server that has ``distributed`` imported already (see ``forkserver.py``);
anything else (a setup script, another Python environment) is exec'd.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, List, Unicode, default

from hubgate.cluster_process import ExitRecord, read_exit_file, write_exit_file

from .base import Backend, BackendError, Phase, ProcessSpec, ProcessState, ProcessStatus
from .forkserver import ForkServerClient, ForkServerError, last_line

__all__ = ["LocalBackend"]

ROLES = ("scheduler", "worker")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_POLL_INTERVAL = 0.02  # seconds between liveness checks while stopping
_KILL_TIMEOUT = 10.0  # after SIGKILL; only a process stuck in the kernel takes longer
_EXIT_RECORD_WAIT = 2.0  # how long poll waits for a child's exit to be recorded
_FORK_SERVER_RETRY = 30.0  # seconds before trying a fork server that failed to start again


# -- /proc -----------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state is [0])."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``None``: no such process)."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def is_running(pid: int | None, ticks: int | None) -> bool:
    """Whether ``pid`` is the process that started at ``ticks`` and has not ended."""
    if not pid:
        return False
    fields = _proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X", "x"):
        return False
    return ticks is None or int(fields[19]) == ticks


def _session_members(sid: int) -> list[int]:
    """Processes of the session ``sid`` (what a cluster process may have started)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields and int(fields[3]) == sid and fields[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def _signal_group(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def _tail(path: str, max_lines: int) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max(64 * 1024, max_lines * 512)))
            data = f.read()
    except FileNotFoundError:
        return None
    lines = data.decode(errors="replace").splitlines()
    return "\n".join(lines[-max_lines:]) if max_lines > 0 else ""


# -- the backend -------------------------------------------------------------------------


class LocalBackend(Backend):
    """Schedulers and workers as local processes (the embedded default)."""

    backend_name = "local"

    work_dir = Unicode(
        config=True,
        help="""Folder for the clusters' credentials and logs.

        Each process gets ``<work_dir>/<cluster>/<name>/`` (mode 0700) for its TLS files
        and token, removed when it stops, and ``<work_dir>/<cluster>/<name>.log`` for its
        output, kept for the logs API. Default: ``~/.local/share/hubgate/clusters``.
        """,
    )

    @default("work_dir")
    def _default_work_dir(self) -> str:
        data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        return os.path.join(data_home, "hubgate", "clusters")

    stop_grace_seconds = Float(
        3.0,
        config=True,
        help="""Seconds a stopped process has to close after SIGTERM before SIGKILL.""",
    )

    use_fork_server = Bool(
        True,
        config=True,
        help="""Start schedulers and workers by forking a server that has imported
        ``distributed`` already: milliseconds instead of about a second per process.

        Used only for the standard command (this backend's ``python`` running
        ``-m hubgate.cluster_process``) without a setup script or another Python
        environment; falls back to a normal start if the server cannot be used.
        """,
    )

    python = Unicode(
        sys.executable,
        config=True,
        help="""The Python interpreter of the standard scheduler and worker command, and
        of the fork server. A cluster's ``python`` resource replaces it.""",
    )

    inherit_env = List(
        Unicode(),
        default_value=["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"],
        config=True,
        help="""Names of the service's environment variables passed to every process.
        Nothing else of the service's environment (its secrets) reaches them.""",
    )

    fork_server_start_timeout = Float(
        60.0,
        config=True,
        help="""Seconds the fork server may take to import ``distributed`` and start.""",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fork_server: ForkServerClient | None = None
        self._fork_server_lock = asyncio.Lock()
        self._fork_server_failed_at = 0.0
        self._fork_server_warmup: asyncio.Future[Any] | None = None
        # pid -> the task that waits for an exec'd child and records its exit
        self._exec_children: dict[int, asyncio.Task[None]] = {}
        # pids forked by our fork server (it records their exits)
        self._forked_children: set[int] = set()

    # -- lifecycle ----------------------------------------------------------------------

    async def setup(self) -> None:
        await _in_thread(os.makedirs, self.work_dir, 0o700, True)
        if self.use_fork_server:
            # Warm it up in the background: the service need not wait for its imports.
            self._fork_server_warmup = asyncio.ensure_future(self._get_fork_server())

    async def cleanup(self) -> None:
        # Clusters keep running: only the fork server goes (its children survive it).
        if self._fork_server_warmup is not None:
            with suppress(Exception):
                await self._fork_server_warmup
        if self._fork_server is not None:
            await self._fork_server.close()
            self._fork_server = None
        # Stop waiting for exec'd children (they keep running; poll finds them).
        for task in list(self._exec_children.values()):
            task.cancel()

    async def _get_fork_server(self) -> ForkServerClient | None:
        async with self._fork_server_lock:
            if self._fork_server is not None and self._fork_server.alive:
                return self._fork_server
            if time.monotonic() - self._fork_server_failed_at < _FORK_SERVER_RETRY:
                return None
            if self._fork_server is not None:
                self.log.warning("The fork server ended; starting a new one")
                await self._fork_server.close()
            await _in_thread(os.makedirs, self.work_dir, 0o700, True)
            server = ForkServerClient(
                self.python,
                os.path.join(self.work_dir, "forkserver.log"),
                self.fork_server_start_timeout,
            )
            try:
                await server.start()
            except ForkServerError as exc:
                self.log.warning("No fork server, starting processes normally: %s", exc)
                self._fork_server_failed_at = time.monotonic()
                self._fork_server = None
                return None
            self._fork_server = server
            return server

    # -- start --------------------------------------------------------------------------

    async def start(self, spec: ProcessSpec) -> ProcessState:
        for what, value in (("cluster name", spec.cluster_name), ("process name", spec.name)):
            if not _SAFE_NAME.match(value):
                raise BackendError(f"The {what} {value!r} cannot be used as a folder name.")
        argv = await self._argv(spec)
        cluster_dir = os.path.join(self.work_dir, spec.cluster_name)
        workdir = os.path.join(cluster_dir, spec.name)
        log = workdir + ".log"
        exit_file = workdir + ".exit"
        try:
            await _in_thread(_prepare_files, cluster_dir, workdir, log, exit_file, spec.files)
        except OSError as exc:
            raise BackendError(
                f"Cannot create the folder for {spec.name} of cluster {spec.cluster_name}: "
                f"{exc.strerror} ({exc.filename}). Ask the administrator to check "
                "LocalBackend.work_dir."
            ) from exc
        env = self._env(spec, workdir, exit_file)

        pid = None
        role = self._fork_role(spec, argv)
        if role is not None:
            pid = await self._fork(role, env, cluster_dir, log, exit_file)
        if pid is None:
            pid = await self._exec(spec, argv, env, cluster_dir, log, exit_file)
        state = {
            "pid": pid,
            "start_ticks": start_ticks(pid),
            "log": log,
            "workdir": workdir,
            "exit_file": exit_file,
        }
        self.log.info("Started %s of %s: pid %s", spec.name, spec.cluster_name, pid)
        return state

    async def _argv(self, spec: ProcessSpec) -> list[str]:
        argv = list(spec.argv)
        if not argv:
            raise BackendError(f"No command to run for {spec.name}.")
        python = spec.resources.get("python")
        if python:
            interpreter = await _in_thread(_find_python, str(python))
            if interpreter is None:
                raise BackendError(
                    f"The Python environment {python!r} does not exist on this host or has "
                    "no python in it: choose another one in the cluster options."
                )
            if argv[0] in (self.python, sys.executable) or os.path.basename(argv[0]).startswith(
                "python"
            ):
                argv[0] = interpreter
        return argv

    def _env(self, spec: ProcessSpec, workdir: str, exit_file: str) -> dict[str, str]:
        env = {name: os.environ[name] for name in self.inherit_env if name in os.environ}
        env.setdefault("HUBGATE_LISTEN_HOST", self.listen_host)
        env.update(spec.env)
        env["HUBGATE_CREDENTIALS_DIR"] = workdir
        env["HUBGATE_EXIT_FILE"] = exit_file
        return env

    def _fork_role(self, spec: ProcessSpec, argv: list[str]) -> str | None:
        """The role to fork, when ``argv`` is exactly the standard command."""
        if not self.use_fork_server or spec.setup:
            return None
        standard = [self.python, "-m", "hubgate.cluster_process"]
        if len(argv) == 4 and argv[:3] == standard and argv[3] in ROLES:
            return argv[3]
        return None

    async def _fork(
        self, role: str, env: dict[str, str], cwd: str, log: str, exit_file: str
    ) -> int | None:
        for _attempt in range(2):  # a second try with a fresh server if it just died
            server = await self._get_fork_server()
            if server is None:
                return None
            try:
                pid = await server.spawn(role, env, cwd, log, exit_file)
            except ForkServerError as exc:
                self.log.warning("Fork server failed (%s)", exc)
                if server.alive:
                    return None  # it answered but refused: exec instead
                continue
            self._forked_children.add(pid)
            return pid
        return None

    async def _exec(
        self,
        spec: ProcessSpec,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        log: str,
        exit_file: str,
    ) -> int:
        if spec.setup:
            # The setup runs in the shell that then becomes the process; argv stays a
            # list of arguments and is never pasted into the script.
            script = (
                f"{spec.setup}\n"
                "status=$?\n"
                'if [ "$status" -ne 0 ]; then\n'
                '  echo "hubgate: the setup script failed with exit code $status" >&2\n'
                '  exit "$status"\n'
                "fi\n"
                'exec "$@"\n'
            )
            command = ["bash", "-c", script, "bash", *argv]
        else:
            command = argv
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendError(
                f"Cannot run {command[0]!r} for {spec.name}: {exc.strerror}. "
                "Check the cluster's Python environment and setup options."
            ) from exc
        finally:
            os.close(log_fd)
        task = asyncio.ensure_future(_record_exit(proc, log, exit_file))
        self._exec_children[proc.pid] = task
        task.add_done_callback(lambda _: self._exec_children.pop(proc.pid, None))
        return proc.pid

    # -- poll ---------------------------------------------------------------------------

    async def poll(self, states: list[ProcessState]) -> list[ProcessStatus]:
        return [await self._poll_one(state) for state in states]

    async def _poll_one(self, state: ProcessState) -> ProcessStatus:
        pid = state.get("pid")
        if is_running(pid, state.get("start_ticks")):
            return ProcessStatus(Phase.RUNNING)
        exit_file = state.get("exit_file")
        record = read_exit_file(exit_file) if exit_file else None
        if record is None and pid is not None:
            record = await self._wait_for_exit_record(pid, exit_file)
        if record is None:
            last = await _in_thread(last_line, state.get("log"))
            reason = "ended without recording why" + (f": {last}" if last else "")
            return ProcessStatus(Phase.GONE, reason=reason)
        code = record.exit_code if record.signal is None else -record.signal
        return ProcessStatus(Phase.GONE, reason=record.describe(), exit_code=code)

    async def _wait_for_exit_record(self, pid: int, exit_file: str | None) -> ExitRecord | None:
        """Our own child may have ended a moment ago: give its parent (this backend or
        the fork server) time to record why."""
        if pid in self._exec_children:
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exec_children[pid]), 10)
        elif pid in self._forked_children and exit_file:
            await _wait_until(lambda: read_exit_file(exit_file) is not None, _EXIT_RECORD_WAIT)
        return read_exit_file(exit_file) if exit_file else None

    # -- stop ---------------------------------------------------------------------------

    async def stop(self, state: ProcessState) -> None:
        pid = state.get("pid")
        ticks = state.get("start_ticks")
        if pid and is_running(pid, ticks):
            exited = _exit_waiter(pid)
            _signal_group(pid, signal.SIGTERM)
            gone = lambda: not is_running(pid, ticks)  # noqa: E731
            if exited is not None:
                # woken by the kernel the moment it exits, instead of the next poll
                with suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), self.stop_grace_seconds)
            if not await _wait_until(
                gone, 0 if exited is not None and exited.done() else self.stop_grace_seconds
            ):
                self.log.warning("pid %s did not stop after SIGTERM; killing it", pid)
                _signal_group(pid, signal.SIGKILL)
                if not await _wait_until(gone, _KILL_TIMEOUT):
                    self.log.error("pid %s survived SIGKILL for %ss", pid, _KILL_TIMEOUT)
        if pid:
            # Anything the process started and left behind in its session.
            for member in await _in_thread(_session_members, pid):
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(member, signal.SIGKILL)
            if pid in self._exec_children:
                with suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._exec_children[pid]), 10)
            self._forked_children.discard(pid)
        workdir = state.get("workdir")
        if workdir:
            await _in_thread(shutil.rmtree, workdir, True)

    # -- logs ---------------------------------------------------------------------------

    async def read_log(self, state: ProcessState, max_lines: int = 50) -> str | None:
        log = state.get("log")
        if not log:
            return None
        return await _in_thread(_tail, log, max_lines)


# -- helpers -----------------------------------------------------------------------------


def _exit_waiter(pid: int) -> asyncio.Future[None] | None:
    """A future done when ``pid`` exits, from a pidfd (Linux >= 5.3; also for processes
    that are not our children), or None where pidfds are not available."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        if not future.done():
            future.set_result(None)

    loop.add_reader(fd, readable)
    future.add_done_callback(lambda _: _close_reader(loop, fd))
    return future


def _close_reader(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    with suppress(ValueError, OSError):
        if loop.remove_reader(fd):
            os.close(fd)


async def _wait_until(condition: Any, seconds: float) -> bool:
    """Check ``condition`` every 20 ms (not with growing back-off: stopping a cluster
    should take as long as the process needs, not a poll interval more)."""
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_INTERVAL)


async def _in_thread(func: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


def _prepare_files(
    cluster_dir: str, workdir: str, log: str, exit_file: str, files: dict[str, bytes]
) -> None:
    os.makedirs(cluster_dir, mode=0o700, exist_ok=True)
    shutil.rmtree(workdir, ignore_errors=True)
    os.mkdir(workdir, 0o700)
    os.chmod(workdir, 0o700)  # whatever the umask
    for name, content in files.items():
        if "/" in name or name in (".", ".."):
            raise OSError(f"bad credentials file name {name!r}")
        fd = os.open(os.path.join(workdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
    with suppress(FileNotFoundError):
        os.unlink(exit_file)
    os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))


def _find_python(path: str) -> str | None:
    """The interpreter of ``path``: an interpreter itself or an environment folder."""
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        candidate = candidate / "bin" / "python"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


async def _record_exit(proc: asyncio.subprocess.Process, log: str, exit_file: str) -> None:
    """Wait for an exec'd child; record why it ended unless it did so itself."""
    returncode = await proc.wait()
    if read_exit_file(exit_file) is not None:
        return
    if returncode < 0:
        record = ExitRecord(signal=-returncode)
    else:
        record = ExitRecord(exit_code=returncode, reason=await _in_thread(last_line, log))
    with suppress(OSError):
        await _in_thread(write_exit_file, exit_file, record)
