"""A fork server: schedulers and workers that start in milliseconds, not seconds.

Starting ``python -m hubgate.runtime.cluster_process`` costs an interpreter start and the
import of ``distributed`` (about half a second, several on a loaded machine). This server
pays that once: it imports everything up front, then for each request forks a child that is
ready to run at once.

    python -m hubgate.spawners.forkserver <unix socket path>

Protocol: one connection per request, one JSON line each way.

    {"op": "spawn", "role": "worker", "uid": 2000000001, "gid": 2000000001,
     "groups": [], "cwd": "...", "log": "...", "exit_file": "...", "env_file": "..."}
                                                    -> {"pid": 1234}
    {"op": "ping"}                                  -> {"ok": true, "pid": <server pid>}
    anything wrong                                  -> {"error": "..."}

The server runs as root and serves every user, so nothing secret ever passes through
it: it is started with a clean environment (``PATH``, locale, thread limits: never the
service's), and a request names only paths and ids. The child calls ``setsid`` (so it
outlives this server and the service), drops to ``uid``/``gid`` with exactly ``groups``
(a system account's own groups; none otherwise), and only then opens its log, reads its environment from ``env_file`` (mode 0600
in its own credentials folder, so the cluster's token and the user's variables reach no
other process's memory) and runs ``hubgate.runtime.cluster_process.main([role])``. The
server reaps its children and, when one ended without recording why (killed by a signal),
writes its exit status to its exit file, never following a link the user planted and
never reading anything a user's process wrote.

Forking a process that runs threads is unsafe (a lock held by another thread stays held
forever in the child), so the server starts none: it is a single-threaded ``select``
loop, it imports only modules that start no threads at import (numpy's OpenBLAS does,
unless limited to one thread, which is also what ``distributed``'s nanny gives workers),
and it refuses to start when a thread appeared anyway. It prints ``ready`` on stdout when
it accepts requests and exits when its stdin closes (the service went away).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import stat
import sys
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PRELOAD",
    "THREAD_LIMITS",
    "ForkServerClient",
    "ForkServerError",
    "last_line",
    "main",
    "thread_count",
]

#: Modules imported before the first fork; optional ones may be missing.
PRELOAD = (
    "distributed",
    "hubgate.runtime.cluster_process",
    "hubgate.runtime.dashboard_guard",
    "hubgate.runtime.deferred_dashboard",
    "hubgate.runtime.scheduler_agent",
)
OPTIONAL_PRELOAD = (
    "distributed.dashboard.scheduler",  # bokeh: half a second of every scheduler start
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.proxy",
    "tornado.platform.asyncio",  # the scheduler's event loop; imported at its start otherwise
    "distributed.http.statics",
    "numpy",
    "dask.array",
    "pandas",
    "dask.dataframe",
)
#: Keeps numerical libraries from starting thread pools at import.
THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
MAX_REQUEST = 1 << 20
# Connections waiting for the server to accept them. The server answers one at a time;
# a connection beyond the backlog is reset (and its child exec'd instead: ~0.8 s of CPU
# more), so the client keeps fewer than this many in flight.
LISTEN_BACKLOG = 128
MAX_IN_FLIGHT = 32
# Seconds from asking to the answer, the wait for a turn included, before the caller
# gives up on the server (and execs the process instead).
ANSWER_TIMEOUT = 30.0
MAX_ENV_FILE = 4 << 20
ROLES = ("scheduler", "worker")
_PR_SET_DUMPABLE = 4  # linux/prctl.h


def thread_count() -> int:
    """Threads of this process, as the kernel sees them (C threads included)."""
    return len(os.listdir("/proc/self/task"))


def _log(message: str) -> None:
    print(f"hubgate forkserver[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def preload() -> list[str]:
    """Import what children need; return the names imported. Raises ``RuntimeError``
    when an import started a thread."""
    for name, value in THREAD_LIMITS.items():
        os.environ.setdefault(name, value)
    loaded = []
    for name in PRELOAD + OPTIONAL_PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            if name in PRELOAD:
                raise
            continue
        loaded.append(name)
        if thread_count() > 1:
            raise RuntimeError(f"importing {name} started a thread: forking would be unsafe")
    return loaded


class ForkServer:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.children: dict[int, dict[str, Any]] = {}
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wakeup_r, self.wakeup_w = os.pipe()
        self.running = True
        self.connection: socket.socket | None = None

    # -- lifecycle ------------------------------------------------------------------

    def serve(self) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        old_umask = os.umask(0o177)  # the socket: owner only
        try:
            self.listener.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        self.listener.listen(LISTEN_BACKLOG)
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)
        signal.set_wakeup_fd(self.wakeup_w)
        # A Python-level handler so SIGCHLD writes to the wakeup fd; reaping happens in
        # the loop, not in the handler.
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "signal")
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
        print("ready", flush=True)
        while self.running:
            for key, _ in self.selector.select(timeout=5):
                if key.data == "accept":
                    self.accept()
                elif key.data == "signal":
                    with suppress(BlockingIOError):
                        os.read(self.wakeup_r, 4096)
                elif key.data == "stdin" and not os.read(sys.stdin.fileno(), 4096):
                    _log("the service went away; exiting (children keep running)")
                    self.stop()
            self.reap()
        with suppress(OSError):
            os.unlink(self.socket_path)
        with suppress(OSError):  # the folder made for it, if empty (service killed)
            os.rmdir(os.path.dirname(self.socket_path))

    def stop(self) -> None:
        self.running = False

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self.record_exit(child, status)

    def record_exit(self, child: dict[str, Any], status: int) -> None:
        from hubgate.runtime.cluster_process import (
            exit_record_from_status,
            read_exit_file,
            write_exit_file,
        )

        exit_file = child.get("exit_file")
        if not exit_file or read_exit_file(exit_file) is not None:
            return  # the child said why itself
        # Only the status: the server never reads a user's log, so nothing one user's
        # process printed sits in the memory the next user's child inherits (the
        # service adds the log's last words when it reads the record).
        record = exit_record_from_status(status)
        try:
            write_exit_file(exit_file, record)
        except OSError as exc:
            _log(f"cannot write {exit_file}: {exc}")

    # -- requests -------------------------------------------------------------------

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            self.connection = conn  # a child must not keep it open
            try:
                reply = self.handle(_read_line(conn))
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            with suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

    def handle(self, line: bytes) -> dict[str, Any]:
        request = json.loads(line)
        if not isinstance(request, dict):
            return {"error": "a request is a JSON object"}
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op != "spawn":
            return {"error": f"unknown op {op!r}"}
        child = ChildRequest.parse(request)
        if isinstance(child, str):
            return {"error": child}
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.run_child(child)
        self.children[pid] = {"exit_file": child.exit_file, "log": child.log}
        return {"pid": pid}

    def run_child(self, child: ChildRequest) -> None:
        """In the forked child: become a session leader, drop to the user's account,
        then run the runtime. Never returns."""
        code = 70
        try:
            os.setsid()
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            self.selector.close()
            self.listener.close()
            if self.connection is not None:
                self.connection.close()
            os.close(self.wakeup_r)
            os.close(self.wakeup_w)
            if child.uid is not None and child.gid is not None:
                drop_privileges(child.uid, child.gid, child.groups)
            os.umask(0o077)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            # Opened as the user: a link planted in their folder leads nowhere new.
            log_fd = os.open(child.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            os.chdir(child.cwd)
            env = read_env_file(child.env_file)
            os.environ.clear()
            os.environ.update(env)
            _refresh_dask_config()
            sys.argv = ["hubgate.runtime.cluster_process", child.role]
            # No exec, so ps shows the server's command line; top and ps -o comm show this.
            with suppress(OSError), open("/proc/self/comm", "w") as comm:
                comm.write(f"hubgate-{child.role}")
            from hubgate.runtime.cluster_process import main

            code = main([child.role])
        except BaseException as exc:
            with suppress(Exception):
                print(f"hubgate: the fork server's child failed: {exc}", file=sys.stderr)
        finally:
            with suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


@dataclass(frozen=True, slots=True)
class ChildRequest:
    """A checked spawn request."""

    role: str
    uid: int | None
    gid: int | None
    groups: tuple[int, ...]
    cwd: str
    log: str
    exit_file: str | None
    env_file: str

    @classmethod
    def parse(cls, request: dict[str, Any]) -> ChildRequest | str:
        role = request.get("role")
        uid, gid = request.get("uid"), request.get("gid")
        groups = request.get("groups", [])
        paths = [request.get(k) for k in ("cwd", "log", "env_file")]
        exit_file = request.get("exit_file")
        if role not in ROLES:
            return "spawn needs role: scheduler or worker"
        if (uid is None) != (gid is None) or not all(
            v is None or (type(v) is int and v > 0) for v in (uid, gid)
        ):
            return "spawn needs uid and gid (both positive integers) or neither"
        if not isinstance(groups, list) or not all(type(g) is int and g >= 0 for g in groups):
            return "groups must be a list of group ids"
        if groups and uid is None:
            return "groups need a uid and gid"
        if not all(isinstance(p, str) and p.startswith("/") for p in paths):
            return "spawn needs absolute paths: cwd, log, env_file"
        if exit_file is not None and not isinstance(exit_file, str):
            return "exit_file must be a path"
        cwd, log, env_file = paths
        return cls(role, uid, gid, tuple(groups), cwd, log, exit_file, env_file)


def drop_privileges(uid: int, gid: int, groups: tuple[int, ...] = ()) -> None:
    """Become ``uid``/``gid`` for good, with exactly ``groups`` as supplementary groups
    (none by default); raise if any of it did not hold."""
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PermissionError(f"could not switch to uid {uid}, gid {gid}")
    if set(os.getgroups()) - {gid} != set(groups) - {gid}:
        raise PermissionError("the supplementary groups are not the account's")
    # Changing credentials made the kernel mark us undumpable: /proc/self would be
    # root's and the user's own tools (psutil's fd counts, a debugger) refused. Nothing
    # in this process is anyone else's: the server holds no secrets.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def read_env_file(path: str) -> dict[str, str]:
    """The environment the service wrote for the child (read, then removed)."""
    from hubgate.runtime.cluster_process import read_own_file

    data = json.loads(read_own_file(path, MAX_ENV_FILE))
    with suppress(OSError):
        os.unlink(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds no environment")
    return {str(k): str(v) for k, v in data.items()}


def _refresh_dask_config() -> None:
    """dask read its configuration (and where to find it: ``~``) from the server's
    environment at import; read it again from the child's."""
    import dask.config

    get_paths = getattr(dask.config, "_get_paths", None)
    if get_paths is not None:
        dask.config.paths[:] = get_paths()
        dask.config.PATH = os.environ.get("DASK_CONFIG") or os.path.join(
            os.path.expanduser("~"), ".config", "dask"
        )
    dask.config.refresh()


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    return data


def last_line(path: str | None) -> str:
    """The last non-empty line of a log file, read from its end (not following a link
    at ``path``: this may run as root on a file in the user's folder)."""
    if not path:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                return ""  # a link to a file the user may not read
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    return next((ln for ln in reversed(lines) if ln), "")


# -- the service's side -----------------------------------------------------------------


class ForkServerError(Exception):
    """The fork server cannot be started or used (the caller falls back to exec)."""


class ForkServerClient:
    """Starts one fork server process and asks it for children."""

    def __init__(
        self,
        python: str,
        log_path: str,
        start_timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> None:
        self.python = python
        self.log_path = log_path
        self.start_timeout = start_timeout
        # What the server and every child see in /proc/<pid>/environ: never the
        # service's own environment (its hub token), whatever the caller has.
        self.env = dict(env or {})
        self.proc: asyncio.subprocess.Process | None = None
        self._dir: str | None = None
        self.socket_path = ""
        # Hundreds of clusters starting at once ask at once: the rest wait here, not
        # in the server's backlog, which resets what overflows it.
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="hubgate-forkserver-")  # 0700
        self.socket_path = os.path.join(self._dir, "socket")
        # HOME: an empty folder of its own, so no account's dask or other settings are
        # read into the memory every child inherits.
        env = {**self.env, **THREAD_LIMITS, "HOME": self._dir}
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "hubgate.spawners.forkserver",
                self.socket_path,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_fd,
                env=env,
                cwd=self._dir,
                start_new_session=True,
            )
        except OSError as exc:
            raise ForkServerError(f"cannot run {self.python}: {exc}") from exc
        finally:
            os.close(log_fd)
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), self.start_timeout)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            await self.close()
            raise ForkServerError(f"the fork server did not start; see {self.log_path}")

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT), self._in_flight:
                return await self._request(message)
        except TimeoutError:
            raise ForkServerError(
                f"the fork server did not answer within {ANSWER_TIMEOUT:g} s"
            ) from None

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError as exc:
            raise ForkServerError(f"cannot reach the fork server: {exc}") from exc
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        except OSError as exc:
            raise ForkServerError(f"the fork server did not answer: {exc}") from exc
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()
        try:
            reply = json.loads(line)
        except ValueError:
            raise ForkServerError("the fork server sent no answer") from None
        if not isinstance(reply, dict) or "error" in reply:
            raise ForkServerError(f"the fork server refused: {reply}")
        return reply

    async def spawn(
        self,
        role: str,
        *,
        uid: int | None,
        gid: int | None,
        groups: tuple[int, ...] = (),
        cwd: str,
        log: str,
        exit_file: str,
        env_file: str,
    ) -> int:
        """Fork a child that runs ``role`` as ``uid``/``gid`` with ``groups`` (None:
        as the server) with the environment in ``env_file``."""
        message = {
            "op": "spawn",
            "role": role,
            "uid": uid,
            "gid": gid,
            "groups": list(groups),
            "cwd": cwd,
            "log": log,
            "exit_file": exit_file,
            "env_file": env_file,
        }
        reply = await self.request(message)
        return int(reply["pid"])

    async def close(self) -> None:
        """Let the server go (its children keep running) and remove its socket folder."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()  # the server exits on EOF
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._dir is not None:
            with suppress(OSError):
                os.unlink(self.socket_path)
            with suppress(OSError):
                os.rmdir(self._dir)
            self._dir = None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m hubgate.spawners.forkserver <unix socket path>", file=sys.stderr)
        return 2
    try:
        loaded = preload()
    except Exception as exc:
        _log(f"cannot serve: {exc}")
        return 1
    _log(f"preloaded {', '.join(loaded)}")
    # Children inherit the frozen generation: their collector never walks the preloaded
    # modules, and never writes to those pages (they stay shared after the fork).
    gc.collect()
    gc.freeze()
    ForkServer(argv[0]).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
