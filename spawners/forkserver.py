"""A fork server: schedulers and workers that start in milliseconds, not seconds.

Starting ``python -m hubgate.cluster_process`` costs an interpreter start and the import
of ``distributed`` (about half a second, several on a loaded machine). This server pays
that once: it imports everything up front, then for each request forks a child that is
ready to run at once.

    python -m hubgate.spawners.forkserver <unix socket path>

Protocol: one connection per request, one JSON line each way.

    {"op": "spawn", "role": "worker", "env": {...}, "cwd": "...", "log": "...",
     "exit_file": "..."}                            -> {"pid": 1234}
    {"op": "ping"}                                  -> {"ok": true, "pid": <server pid>}
    anything wrong                                  -> {"error": "..."}

The child calls ``setsid`` (so it outlives this server and the service), replaces its
environment, sends its output to the log file and runs
``hubgate.cluster_process.main([role])``. The server reaps its children and, when one
ended without recording why (killed by a signal), writes its exit file.

Forking a process that runs threads is unsafe (a lock held by another thread stays held
forever in the child), so the server starts none: it is a single-threaded ``select``
loop, it imports only modules that start no threads at import (numpy's OpenBLAS does,
unless limited to one thread, which is also what ``distributed``'s nanny gives workers),
and it refuses to start when a thread appeared anyway. It prints ``ready`` on stdout when
it accepts requests and exits when its stdin closes (the service went away).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
from contextlib import suppress
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
PRELOAD = ("distributed", "hubgate.cluster_process", "hubgate.scheduler_agent")
OPTIONAL_PRELOAD = (
    "distributed.dashboard.scheduler",  # bokeh: half a second of every scheduler start
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.proxy",
    "distributed.http.statics",
    "numpy",
    "dask.array",
    "pandas",
    "dask.dataframe",
)
#: Keeps numerical libraries from starting thread pools at import.
THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
MAX_REQUEST = 1 << 20
ROLES = ("scheduler", "worker")


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
        self.listener.listen(64)
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
        from hubgate.cluster_process import (
            exit_record_from_status,
            read_exit_file,
            write_exit_file,
        )

        exit_file = child.get("exit_file")
        if not exit_file or read_exit_file(exit_file) is not None:
            return  # the child said why itself
        # A signal says it all; an exit code comes with the last words in the log.
        reason = "" if os.WIFSIGNALED(status) else last_line(child.get("log"))
        record = exit_record_from_status(status, reason)
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
        role = request.get("role")
        env = request.get("env")
        log = request.get("log")
        if role not in ROLES or not isinstance(env, dict) or not isinstance(log, str):
            return {"error": "spawn needs role (scheduler|worker), env (object), log (path)"}
        cwd = request.get("cwd") or "/"
        # Open the log here so a bad path is an error for the caller, not a silent child.
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                self.run_child(role, {str(k): str(v) for k, v in env.items()}, cwd, log_fd)
        finally:
            os.close(log_fd)
        self.children[pid] = {"exit_file": request.get("exit_file"), "log": log}
        return {"pid": pid}

    def run_child(self, role: str, env: dict[str, str], cwd: str, log_fd: int) -> None:
        """In the forked child: become a session leader and run the runtime. Never
        returns."""
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
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            # dask read its configuration from the server's environment at import.
            import dask.config

            dask.config.refresh()
            sys.argv = ["hubgate.cluster_process", role]
            # No exec, so ps shows the server's command line; top and ps -o comm show this.
            with suppress(OSError), open("/proc/self/comm", "w") as comm:
                comm.write(f"hubgate-{role}")
            from hubgate.cluster_process import main

            code = main([role])
        except BaseException as exc:
            with suppress(Exception):
                print(f"hubgate: the fork server's child failed: {exc}", file=sys.stderr)
        finally:
            with suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


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
    """The last non-empty line of a log file, read from its end."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
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

    def __init__(self, python: str, log_path: str, start_timeout: float = 60) -> None:
        self.python = python
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self._dir: str | None = None
        self.socket_path = ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="hubgate-forkserver-")  # 0700
        self.socket_path = os.path.join(self._dir, "socket")
        env = {**os.environ, **THREAD_LIMITS}
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
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError as exc:
            raise ForkServerError(f"cannot reach the fork server: {exc}") from exc
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 30)
        except (OSError, TimeoutError) as exc:
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
        self, role: str, env: dict[str, str], cwd: str, log: str, exit_file: str
    ) -> int:
        message = {"op": "spawn", "role": role, "env": env, "cwd": cwd, "log": log}
        reply = await self.request({**message, "exit_file": exit_file})
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
    ForkServer(argv[0]).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
