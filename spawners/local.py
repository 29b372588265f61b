"""The local backend: every scheduler and worker is a process on the service's host.

Each process runs under an account of its cluster's user, never as the service (see
``accounts.py``): the user's system account (``account_mode = "system"``, a template
from hub name to account name) or a uid of the user's own from ``uid_range``, kept in
the service's database (``"uid-range"``, for hubs whose users have no system
accounts). Both need the service to run as root (or with CAP_SETUID, CAP_SETGID,
CAP_CHOWN, CAP_KILL and CAP_DAC_OVERRIDE); ``UnsafeLocalBackend`` runs everything as the
service's own account, for a single-user set-up only.

Each process runs in its own session (so it outlives a restart of the service, and
stopping it stops everything it started). ``<work_dir>`` is the service's (0711: others
may pass, not look); ``<work_dir>/<cluster>/`` belongs to the cluster's account (0700)
and holds each process's credentials in ``<name>/`` (0700, files 0600), its output in
``<name>.log`` and its exit record in ``<name>.exit``. The service (root) touches files
there without following links the user may plant. Its state is ``{"pid", "start_ticks",
"uid", "log", "workdir", "exit_file"}``: the start time from ``/proc/<pid>/stat`` tells a
recycled pid from ours, so ``poll`` and ``stop`` work from stored state alone.

The usual process, this interpreter running ``-m hubgate.runtime.cluster_process``, is
forked from a fork server that has ``distributed`` imported already (see ``forkserver.py``);
anything else (a setup script, another Python environment) is exec'd as the account.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, ClassVar

from traitlets import Bool, Enum, Float, Integer, List, Tuple, Unicode, Union, default
from traitlets import Callable as CallableTrait

from hubgate.runtime.cluster_process import ExitRecord, read_exit_file, write_exit_file

from .accounts import (
    Account,
    AccountRefused,
    check_uid,
    lookup_system_account,
    missing_privileges,
    untraversable_ancestor,
)
from .base import Backend, BackendError, Phase, ProcessSpec, ProcessState, ProcessStatus
from .forkserver import ForkServerClient, ForkServerError, last_line

__all__ = ["LocalBackend", "UnsafeLocalBackend"]

ROLES = ("scheduler", "worker")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_POLL_INTERVAL = 0.02  # seconds between liveness checks while stopping
_KILL_TIMEOUT = 10.0  # after SIGKILL; only a process stuck in the kernel takes longer
_EXIT_RECORD_WAIT = 2.0  # how long poll waits for a child's exit to be recorded
_FORK_SERVER_RETRY = 30.0  # seconds before trying a fork server that failed to start again
_SYSTEM_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")
ENV_FILE = ".env.json"  # in the credentials folder: a forked child's environment
_MAX_UID = 2**31 - 2  # uids past a signed 32-bit int confuse tools (and PostgreSQL's int)


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


def _session_members(sid: int, uid: int | None) -> list[int]:
    """Processes of the session ``sid`` (what a cluster process may have started) that
    run as ``uid``: once the leader is gone its pid may be another user's session's."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields and int(fields[3]) == sid and fields[0] not in ("Z", "X"):
                if uid is None or _proc_uid(int(entry)) == uid:
                    members.append(int(entry))
    return members


def _proc_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _signal_group(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def _tail(path: str, max_lines: int) -> str | None:
    try:
        # The log is in the user's folder and this runs as root: no link, no FIFO.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return "(the log is not a file the service reads)"
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        # another hard link: maybe a file the user cannot read (protected_hardlinks off)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return "(the log is not a file the service reads)"
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - max(64 * 1024, max_lines * 512)))
        data = f.read()
    lines = data.decode(errors="replace").splitlines()
    return "\n".join(lines[-max_lines:]) if max_lines > 0 else ""


# -- the backend -------------------------------------------------------------------------


class LocalBackend(Backend):
    """Schedulers and workers as local processes (the embedded default)."""

    backend_name = "local"
    #: Nothing beyond hubgate's own settings: ``python`` (another environment's
    #: interpreter) is one of those.
    accepted_resources: ClassVar[dict[str, str]] = {}

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
        ``-m hubgate.runtime.cluster_process``) without a setup script or another Python
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
        default_value=["PATH", "LANG", "LC_ALL", "TZ", "TMPDIR"],
        config=True,
        help="""Names of the service's environment variables passed to every process
        (and to the fork server). Nothing else of the service's environment (its
        secrets) reaches them. HOME, USER and LOGNAME are always the account's.""",
    )

    account_mode = Enum(
        ["system", "uid-range"],
        default_value="system",
        config=True,
        help="""Which account runs a user's schedulers and workers.

        ``"system"``: the user's system account, named by ``account_template`` (as
        dask-gateway's LocalBackend and JupyterHub's LocalProcessSpawner do), with the
        groups the group database gives it (as its login has them); a hub user without
        one cannot create clusters (403).
        ``"uid-range"``: for hubs whose users have no system accounts; each hub user
        gets a uid of their own from ``uid_range`` (group id the same number, no
        supplementary groups), recorded in the service's database so it never changes
        and is never given to anyone else.

        Either way the service must run as root (or with CAP_SETUID, CAP_SETGID,
        CAP_CHOWN, CAP_KILL and CAP_DAC_OVERRIDE), and accounts below ``min_uid`` or
        the service's own are refused. ``UnsafeLocalBackend`` (``"unsafe-local"``) runs
        everything as the service instead, for single-user set-ups only.
        """,
    )

    account_template = Union(
        [Unicode(), CallableTrait()],
        default_value="{username}",
        config=True,
        help="""In ``"system"`` mode, the system account of a hub user:
        ``"{username}"``, ``"jupyter-{username}"`` (The Littlest JupyterHub's), or a
        callable ``f(hub_username) -> str``.""",
    )

    uid_range = Tuple(
        Integer(),
        Integer(),
        default_value=(2_000_000_000, 2_000_999_999),
        config=True,
        help="""In ``"uid-range"`` mode, the first and last uid (inclusive) handed to
        hub users. Choose numbers no system account, LDAP user or subordinate id range
        (/etc/subuid, container user namespaces) uses: the service refuses to start when
        a system account falls in it. At least ``min_uid``, below 2**31 - 1.""",
    )

    fork_server_start_timeout = Float(
        60.0,
        config=True,
        help="""Seconds the fork server may take to import ``distributed`` and start.""",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._range_accounts: dict[str, Account] = {}
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
        missing = missing_privileges()
        if missing:
            raise BackendError(
                "LocalBackend runs each user's processes under an account of their own, "
                f"which needs root (this service lacks {', '.join(missing)}). Run the "
                "service as root; or, for a single-user set-up only, use "
                "backend_class = 'unsafe-local', which runs every cluster as the service."
            )
        if self.account_mode == "uid-range":
            self._check_uid_range()
            if self.uid_allocator is None:
                raise BackendError(
                    "LocalBackend.account_mode = 'uid-range' keeps the uids in the "
                    "service's database: it needs the hubgate service (uid_allocator)"
                )
            await _in_thread(self._check_range_free)
        await _in_thread(self._prepare_work_dir, 0o711)
        await _in_thread(self._check_reachable)
        self._start_fork_server()

    def _start_fork_server(self) -> None:
        if self.use_fork_server:
            # Warm it up in the background: the service need not wait for its imports.
            self._fork_server_warmup = asyncio.ensure_future(self._get_fork_server())

    def _prepare_work_dir(self, mode: int) -> None:
        os.makedirs(self.work_dir, mode, exist_ok=True)
        os.chmod(self.work_dir, mode)  # whatever the umask, or an older, closed one
        blocked = untraversable_ancestor(self.work_dir) if mode & 0o001 else None
        if blocked is not None:
            raise BackendError(
                f"LocalBackend.work_dir {self.work_dir} is inside {blocked}, which other "
                "accounts cannot pass through (mode "
                f"{stat.S_IMODE(os.stat(blocked).st_mode):04o}): users' processes could "
                "not reach their folders. Choose a work_dir whose parent folders all "
                "have the search bit for others (o+x), e.g. under /var/lib or /srv."
            )

    def _check_uid_range(self) -> None:
        first, last = self.uid_range
        if not self.min_uid <= first <= last <= _MAX_UID:
            raise BackendError(
                f"LocalBackend.uid_range {first}..{last} must lie within "
                f"{self.min_uid}..{_MAX_UID} (min_uid..2**31-2), first <= last"
            )

    def _check_range_free(self) -> None:
        first, last = self.uid_range
        taken = sorted(e.pw_name for e in pwd.getpwall() if first <= e.pw_uid <= last)
        if taken:
            raise BackendError(
                f"LocalBackend.uid_range {first}..{last} holds the system accounts "
                f"{', '.join(taken[:5])}: users would share their uids. Choose a range "
                "that no account uses."
            )

    def _probe_account(self) -> tuple[int, int]:
        """An unprivileged account to check what users' processes can reach."""
        if self.account_mode == "uid-range":
            return self.uid_range[0], self.uid_range[0]
        try:
            nobody = pwd.getpwnam("nobody")
            return nobody.pw_uid, nobody.pw_gid
        except KeyError:
            return 65534, 65534

    def _check_reachable(self) -> None:
        """Run the interpreter as an unprivileged account: it must start, find hubgate
        and distributed, and reach the work folder (not a root-only venv or /root)."""
        uid, gid = self._probe_account()
        code = (
            "import importlib.util, os, sys\n"
            "os.stat(sys.argv[1])\n"
            "import hubgate.runtime.cluster_process\n"
            "assert importlib.util.find_spec('distributed'), 'distributed is not installed'\n"
        )
        try:
            result = subprocess.run(
                [self.python, "-c", code, self.work_dir],
                user=uid,
                group=gid,
                extra_groups=[],
                env=self._inherited_env(),
                cwd="/",
                capture_output=True,
                text=True,
                timeout=self.fork_server_start_timeout,
            )
            problem = "" if result.returncode == 0 else (result.stderr.strip() or "failed")
        except (OSError, subprocess.SubprocessError) as exc:
            problem = str(exc)
        if problem:
            raise BackendError(
                f"Users' processes cannot run {self.python} (checked as uid {uid}): "
                f"{problem.splitlines()[-1]}. The interpreter, its standard library, the "
                "installed packages and work_dir must be readable by every account: "
                "install Python outside root-only folders such as /root (scripts/"
                "bootstrap.sh picks such a Python for .venv) or set LocalBackend.python."
            )

    def _inherited_env(self) -> dict[str, str]:
        return {name: os.environ[name] for name in self.inherit_env if name in os.environ}

    # -- accounts -----------------------------------------------------------------------

    async def check_user(self, username: str) -> None:
        await self.account_for(username)

    async def account_for(self, username: str) -> Account:
        """The account ``username``'s processes run as; :class:`AccountRefused` when
        there is none they may use."""
        if self.account_mode == "uid-range":
            account = await self._range_account(username)
        else:
            account = await self._system_account(username)
        check_uid(account.uid, self.min_uid, username, account.name, self.system_uid_ranges)
        return account

    async def _system_account(self, username: str) -> Account:
        template = self.account_template
        name = template(username) if callable(template) else template.format(username=username)
        if not isinstance(name, str) or not _SYSTEM_USER.fullmatch(name):
            raise AccountRefused(
                f"The hub user {username!r} has no valid system account name ({name!r}); "
                "ask an administrator to check LocalBackend.account_template."
            )
        account = await _in_thread(lookup_system_account, name)
        if account is None:
            raise AccountRefused(
                f"There is no system account {name!r} for the hub user {username!r} on "
                "this host: ask an administrator to create it."
            )
        return account

    async def _range_account(self, username: str) -> Account:
        account = self._range_accounts.get(username)
        if account is not None:
            return account
        if self.uid_allocator is None:
            raise BackendError("uid-range mode has no uid allocator (see LocalBackend.setup)")
        first, last = self.uid_range
        try:
            uid = await self.uid_allocator.uid_for(username, first, last)
        except LookupError as exc:
            raise AccountRefused(
                f"No uid is left for the hub user {username!r} ({exc}): ask an "
                "administrator to widen LocalBackend.uid_range."
            ) from exc
        owner = await _in_thread(_system_name_of, uid)
        if owner is not None:
            raise AccountRefused(
                f"The uid {uid} of the hub user {username!r} now belongs to the system "
                f"account {owner!r}: ask an administrator to move LocalBackend.uid_range "
                "away from system accounts."
            )
        account = Account(name=username, uid=uid, gid=uid)
        self._range_accounts[username] = account
        return account

    def _switch_to(self, account: Account) -> Account | None:
        """The account to switch to, or None to stay the service (unsafe backend)."""
        return account

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
            server = ForkServerClient(
                self.python,
                os.path.join(self.work_dir, "forkserver.log"),
                self.fork_server_start_timeout,
                env=self._inherited_env(),
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
        account = await self.account_for(spec.username)
        switch = self._switch_to(account)
        argv = await self._argv(spec)
        cluster_dir = os.path.join(self.work_dir, spec.cluster_name)
        workdir = os.path.join(cluster_dir, spec.name)
        log = workdir + ".log"
        exit_file = workdir + ".exit"
        env = self._env(spec, account, cluster_dir, workdir, exit_file)
        role = self._fork_role(spec, argv)
        # A forked child reads its environment from a file of its own: the fork server
        # serves every user and must never hold one's secrets.
        env_file = json.dumps(env).encode() if role is not None else None
        owner = (switch.uid, switch.gid) if switch is not None else None
        try:
            log_fd = await _in_thread(
                _prepare_files, cluster_dir, spec.name, spec.files, env_file, owner
            )
        except OSError as exc:
            raise BackendError(
                f"Cannot create the folder for {spec.name} of cluster {spec.cluster_name}: "
                f"{exc.strerror or exc} ({exc.filename or cluster_dir}). Ask the "
                "administrator to check LocalBackend.work_dir."
            ) from exc
        try:
            pid = None
            if role is not None:
                pid = await self._fork(
                    role, switch, cluster_dir, log, exit_file, os.path.join(workdir, ENV_FILE)
                )
                if pid is None:
                    with suppress(OSError):
                        os.unlink(os.path.join(workdir, ENV_FILE))
            if pid is None:
                pid = await self._exec(spec, switch, argv, env, cluster_dir, log_fd, exit_file)
        finally:
            os.close(log_fd)
        state = {
            "pid": pid,
            "start_ticks": start_ticks(pid),
            "uid": account.uid,
            "log": log,
            "workdir": workdir,
            "exit_file": exit_file,
        }
        self.log.info(
            "Started %s of %s: pid %s, uid %s", spec.name, spec.cluster_name, pid, account.uid
        )
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

    def _env(
        self, spec: ProcessSpec, account: Account, cluster_dir: str, workdir: str, exit_file: str
    ) -> dict[str, str]:
        env = self._inherited_env()
        env.setdefault("HUBGATE_LISTEN_HOST", self.listen_host)
        env.update(spec.env)
        # Who the process is, whatever the service is: uids without a system account
        # live in their cluster's folder.
        env.update(HOME=account.home or cluster_dir, USER=account.name, LOGNAME=account.name)
        env["HUBGATE_CREDENTIALS_DIR"] = workdir
        env["HUBGATE_EXIT_FILE"] = exit_file
        if spec.role == "scheduler":
            # distributed's scratch space, unless the user's environment names one: the
            # scheduler's own folder (removed when it stops), not the account's
            # <tmp>/dask-scratch-space, where every scheduler starting lists and tries
            # to lock the folder of every other one running (200 clusters of one user:
            # ~5 ms of each start). Workers keep theirs: they spill there.
            env.setdefault("DASK_TEMPORARY_DIRECTORY", workdir)
        return env

    def _fork_role(self, spec: ProcessSpec, argv: list[str]) -> str | None:
        """The role to fork, when ``argv`` is exactly the standard command."""
        if not self.use_fork_server or spec.setup:
            return None
        standard = [self.python, "-m", "hubgate.runtime.cluster_process"]
        if len(argv) == 4 and argv[:3] == standard and argv[3] in ROLES:
            return argv[3]
        return None

    async def _fork(
        self,
        role: str,
        account: Account | None,
        cwd: str,
        log: str,
        exit_file: str,
        env_file: str,
    ) -> int | None:
        for _attempt in range(2):  # a second try with a fresh server if it just died
            server = await self._get_fork_server()
            if server is None:
                return None
            try:
                pid = await server.spawn(
                    role,
                    uid=account.uid if account else None,
                    gid=account.gid if account else None,
                    groups=account.groups if account else (),
                    cwd=cwd,
                    log=log,
                    exit_file=exit_file,
                    env_file=env_file,
                )
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
        account: Account | None,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        log_fd: int,
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
        # The child becomes the account (with its own groups only) before it execs.
        as_account: dict[str, Any] = {}
        if account is not None:
            as_account = {
                "user": account.uid,
                "group": account.gid,
                "extra_groups": list(account.groups),
            }
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                umask=0o077,
                **as_account,
            )
        except OSError as exc:
            raise BackendError(
                f"Cannot run {command[0]!r} for {spec.name}: {exc.strerror}. "
                "Check the cluster's Python environment and setup options."
            ) from exc
        log = os.path.join(cwd, spec.name + ".log")
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
        if record.signal is None and record.exit_code and not record.reason:
            # recorded by the fork server, which reads no user's output: its last words
            record = ExitRecord(
                record.exit_code, None, await _in_thread(last_line, state.get("log"))
            )
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
            for member in await _in_thread(_session_members, pid, state.get("uid")):
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


class UnsafeLocalBackend(LocalBackend):
    """Every scheduler and worker as a local process of the service's own account.

    Unsafe on any hub with more than one user: each user's code can read the service's
    secrets and every other user's clusters. For a single-user set-up (a laptop, a
    personal hub) where the service runs as that user; it needs no root."""

    backend_name = "unsafe-local"

    async def setup(self) -> None:
        self.log.warning(
            "UnsafeLocalBackend: every cluster runs as the service's own account (uid %s) "
            "and can read the service's secrets and other users' clusters. Use it only "
            "where a single user has clusters; use LocalBackend on a shared hub.",
            os.getuid(),
        )
        await _in_thread(self._prepare_work_dir, 0o700)
        self._start_fork_server()

    async def account_for(self, username: str) -> Account:
        entry = await _in_thread(pwd.getpwuid, os.getuid())
        return Account(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)

    def _switch_to(self, account: Account) -> Account | None:
        return None


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
    cluster_dir: str,
    name: str,
    files: dict[str, bytes],
    env_file: bytes | None,
    owner: tuple[int, int] | None,
) -> int:
    """Make ``<cluster_dir>/<name>/`` with ``files`` (and the environment file), an
    empty ``<name>.log`` and no ``<name>.exit``, all given to ``owner`` (uid, gid);
    return the log opened for appending.

    Runs as root in a folder the user owns (where their running processes may plant
    links): every step is relative to the folder's descriptor, creates with
    ``O_EXCL``/``O_NOFOLLOW`` and never follows a link. The cluster folder itself
    cannot be swapped: its parent, the work folder, is the service's.
    """
    with suppress(FileExistsError):
        os.mkdir(cluster_dir, 0o700)
    dir_fd = os.open(cluster_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if owner is not None:
            current = os.fstat(dir_fd).st_uid
            if current not in (owner[0], os.geteuid()):
                raise OSError(f"{cluster_dir} belongs to uid {current}, not {owner[0]}")
            os.fchown(dir_fd, *owner)
        os.fchmod(dir_fd, 0o700)
        shutil.rmtree(name, dir_fd=dir_fd, ignore_errors=True)
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        work_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            if owner is not None:
                os.fchown(work_fd, *owner)
            os.fchmod(work_fd, 0o700)  # whatever the umask
            contents = dict(files)
            if env_file is not None:
                contents[ENV_FILE] = env_file
            for file_name, content in contents.items():
                if "/" in file_name or file_name in (".", ".."):
                    raise OSError(f"bad credentials file name {file_name!r}")
                fd = _create(file_name, work_fd, owner)
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
        finally:
            os.close(work_fd)
        with suppress(FileNotFoundError):
            os.unlink(name + ".exit", dir_fd=dir_fd)
        with suppress(FileNotFoundError):
            os.unlink(name + ".log", dir_fd=dir_fd)
        log_fd = _create(name + ".log", dir_fd, owner)
        os.set_inheritable(log_fd, False)
        return log_fd
    finally:
        os.close(dir_fd)


def _create(name: str, dir_fd: int, owner: tuple[int, int] | None) -> int:
    """A new file (0600) in ``dir_fd``, given to ``owner``; never an existing one."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_APPEND | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    if owner is not None:
        os.fchown(fd, *owner)
    return fd


def _system_name_of(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


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
