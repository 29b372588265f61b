"""Clusters as batch jobs: what Slurm, PBS, SGE, LSF and HTCondor have in common.

Each scheduler and each worker is one batch job, submitted as the user (through a
prefix such as ``runuser -u {username} --`` or ``sudo -n -u {username}``), with its
credentials in a staging folder under the user's home that the user owns::

    ~/.hubgate/<cluster>/<name>/   (0700)  ca.crt, worker.crt, worker.key (0600),
                                           job.out (the job's output), exit.json

The job script (see :mod:`.script`) exports the environment, runs the cluster's
``setup`` snippet and then ``exec``s the process. ``poll`` asks the batch system about all
jobs in one call; ``stop`` cancels and waits until the job has left the queue.

:class:`BatchBackend` is that lifecycle; a system (one module each: ``slurm.py``,
``pbs.py``, ``sge.py``, ``lsf.py``, ``htcondor.py``) writes the hooks it leaves abstract:
``render_submission`` (the whole text its submit command reads, plus any file to stage
beside it), ``parse_job_id``, ``query_jobs`` and ``queue_and_project``.

Commands, job-id parsing and state patterns build on batchspawner (see
:mod:`.parsing`); unlike batchspawner every command is an argument list, every value in
a script is checked or quoted, and neither the script nor the environment is ever
logged.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import math
import os
import posixpath
import pwd
import re
import stat
import sys
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from traitlets import Bool, Float, List, Unicode, Union, default
from traitlets import Callable as CallableTrait

from ...runtime.dashboard_guard import DASHBOARD_SECRET_FILE
from ..accounts import AccountRefused, check_uid
from ..base import Backend, BackendError, Phase, ProcessSpec, ProcessState, ProcessStatus
from .command import CommandError, CommandResult, failure, run_command
from .parsing import JobInfo, JobParseError
from .script import JobRequest, check_directive, check_directive_value, parse_walltime

__all__ = [
    "BatchBackend",
    "QueueBackend",
    "Submission",
    "SystemAccount",
]

# POSIX-ish account names (useradd's default rule, plus upper case for LDAP sites).
_SYSTEM_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")
# Cluster and process names become path components and job names.
_PATH_PART = re.compile(r"[A-Za-z0-9_.-]+")
# A node name as batch systems print it: a host name, nothing that could add a port.
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
# Files in the staging folder that are secrets; removed once the job is gone.
_CREDENTIAL_FILES = ("ca.crt", "scheduler.crt", "scheduler.key", "worker.crt", "worker.key")
EXIT_FILE = "exit.json"
# How many job ids one query command carries (command lines have a length limit).
_QUERY_CHUNK = 200


@dataclass(frozen=True)
class Submission:
    """What a batch system is given for one job: ``text``, which its submit command reads
    on stdin (a job script with directives, or a submit description), and ``files`` to
    stage in the job's folder before it is submitted (a script the description runs)."""

    text: str
    files: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class SystemAccount:
    """The system account a hub user's jobs run as."""

    name: str
    uid: int
    home: str


def _lookup_account(name: str) -> SystemAccount:
    entry = pwd.getpwnam(name)
    return SystemAccount(name=entry.pw_name, uid=entry.pw_uid, home=entry.pw_dir)


def _read_tail(path: str, max_lines: int, owner: str) -> str | None:
    """The last ``max_lines`` lines of a file that ``owner`` owns, reading only its end.

    Run as root on a file in the user's folder: a symlink or someone else's file there
    is refused (PermissionError), so a user cannot make the service read /etc/shadow.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermissionError(f"{path} is a symbolic link") from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != pwd.getpwnam(owner).pw_uid:
            raise PermissionError(f"{path} is not a regular file owned by {owner}")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        chunk = min(size, max(64 * 1024, max_lines * 512))
        f.seek(size - chunk)
        data = f.read()
    lines = data.decode(errors="replace").splitlines()
    if chunk < size and lines:
        lines = lines[1:]  # the first line is probably cut
    return "\n".join(lines[-max_lines:]) + ("\n" if lines else "")


def _job_id(state: ProcessState) -> str:
    return str(state.get("job_id") or "")


class BatchBackend(Backend):
    """What every batch system has in common. Subclasses say how to describe, submit,
    query and cancel a job on their system: the abstract hooks below
    (``render_submission``, ``parse_job_id``, ``query_jobs``, ``queue_and_project``) join
    the backend contract and are checked when a subclass is defined."""

    __abstract__ = True

    #: The batch system's name in messages ("Slurm job 12 ...").
    system_name: ClassVar[str] = ""
    #: Files the batch system writes in the staging folder besides ``output_file``
    #: (HTCondor's error and event logs), removed before a new job of the same name.
    system_files: ClassVar[tuple[str, ...]] = ()
    #: What a cluster's options may set per job (read by ``job_request``).
    accepted_resources: ClassVar[dict[str, str]] = {
        "account": "the account (allocation) charged, instead of BatchBackend.account",
        "walltime": "the jobs' wall-clock limit, instead of BatchBackend.walltime",
        "directives": "extra directive lines (a list, or lines of text)",
    }

    @default("listen_host")
    def _default_listen_host(self) -> str:
        # Workers on other nodes and the service must reach the scheduler.
        return "0.0.0.0"

    advertise_host_command = List(
        Unicode(),
        default_value=["hostname"],
        config=True,
        help="""Command run inside the job whose output is the host name the process
        advertises (HUBGATE_ADVERTISE_HOST), as an argument list.

        The default, ``hostname``, gives the compute node's name as the batch system
        knows it. Use e.g. ``["hostname", "-f"]`` where nodes must be reached by their
        fully qualified name; an empty list leaves the choice to the process runtime
        (the node's FQDN).
        """,
    )

    node_host = Unicode(
        "{node}",
        config=True,
        help="""How the service and the workers reach a scheduler's node: a template in
        which ``{node}`` is the node's name as the batch system reports it (Slurm's
        BatchHost, PBS's exec_host, SGE's queue instance, LSF's exec_host, HTCondor's
        RemoteHost), e.g. ``"{node}.cluster.example.org"`` where nodes are known by their
        full names. The scheduler's own idea of its address is never used: it runs the
        user's code.""",
    )

    account = Unicode(
        "",
        config=True,
        help="""Account (allocation) charged for the jobs; empty for the system's default.
        A cluster option ``account`` (from ProcessSpec.resources) overrides it.""",
    )

    walltime = Unicode(
        "",
        config=True,
        help="""Wall-clock limit of each job: ``HH:MM:SS``, ``D-HH:MM:SS`` or whole
        minutes; empty for the queue's default. A cluster option ``walltime`` overrides
        it. A cluster that should live longer than this needs its jobs restarted.""",
    )

    extra_directives = List(
        Unicode(),
        config=True,
        help="""Extra directive lines for every job, each one option without the
        directive prefix, e.g. ``["--gres=gpu:1"]`` for Slurm or ``["-l gpu=1"]`` for PBS.
        Cluster options may add more through ``resources["directives"]``.""",
    )

    job_shell = Unicode(
        "/bin/bash",
        config=True,
        help="""Shell that runs the job script. The script itself is POSIX sh, but users'
        setup snippets (``source env/bin/activate``) usually need bash.""",
    )

    submit_as_user = List(
        Unicode(),
        default_value=["runuser", "-u", "{username}", "--"],
        config=True,
        help="""Command prefix that runs a command as the job's user, as an argument list
        in which ``{username}`` is replaced by the system user name.

        The default, ``runuser``, needs the service to run as root. A service running as
        an unprivileged account with sudo rights uses
        ``["sudo", "-n", "-u", "{username}", "--"]``. An empty list runs every command as
        the service's own user (a single-user deployment).

        Submission, creating the staging folder and (see ``cancel_as_user`` and
        ``read_log_as_user``) cancelling and reading output go through this prefix.
        """,
    )

    system_username = Union(
        [Unicode(), CallableTrait()],
        default_value="{username}",
        config=True,
        help="""The system account a hub user's jobs run as: a template in which
        ``{username}`` is the hub user name (e.g. ``"{username}"`` or ``"hub-{username}"``),
        or a callable ``f(hub_username) -> str``.""",
    )

    staging_dir = Unicode(
        "{home}/.hubgate/{cluster}/{name}",
        config=True,
        help="""Folder for a job's credentials and output, created as the user with mode
        0700 (credential files 0600). Fields: ``{home}`` (the user's home), ``{username}``
        (system user), ``{cluster}`` (cluster name), ``{name}`` ("scheduler" or the
        worker's name). It must be on a file system the compute nodes see.""",
    )

    output_file = Unicode(
        "job.out",
        config=True,
        help="""Name of the job's output file (stdout and stderr) in the staging folder.""",
    )

    cancel_as_user = Bool(
        True,
        config=True,
        help="""Cancel jobs through ``submit_as_user`` (as the job's user). Set to False
        when the service's own account may cancel any job (root or a batch-system
        operator).""",
    )

    query_as_user = Bool(
        False,
        config=True,
        help="""Query job states through ``submit_as_user``, one query per user, instead
        of one query for all jobs as the service's account. Needed only where the batch
        system hides other users' jobs (Slurm's ``PrivateData=jobs``).""",
    )

    read_log_as_user = Bool(
        False,
        config=True,
        help="""Read job output through ``submit_as_user`` + ``tail``. When False and the
        service runs as root, output files are read directly (falling back to the
        prefix when root may not read them, as on NFS with root squash).""",
    )

    submit_environment = List(
        Unicode(),
        default_value=[
            "PATH",
            "LANG",
            "LC_ALL",
            "TZ",
            "SLURM_CONF",
            "PBS_CONF_FILE",
            "PBS_SERVER",
            "SGE_ROOT",
            "SGE_CELL",
            "SGE_CLUSTER_NAME",
            "SGE_QMASTER_PORT",
            "SGE_EXECD_PORT",
            "LSF_ENVDIR",
            "LSF_SERVERDIR",
            "LSF_LIBDIR",
            "LSF_BINDIR",
            "LSF_FULL_VERSION",
            "CONDOR_CONFIG",
        ],
        config=True,
        help="""Variables of the service's environment passed to the batch commands.
        Nothing else is: batch systems copy the submitting environment into the job, and
        the service's environment holds its own secrets (JUPYTERHUB_API_TOKEN).""",
    )

    command_timeout = Float(
        60.0,
        config=True,
        help="""Seconds a batch command (submit, query, cancel) may take before it is
        killed and the operation fails.""",
    )

    stop_timeout = Float(
        180.0,
        config=True,
        help="""Seconds ``stop`` waits for a cancelled job to leave the queue. Batch
        systems send SIGTERM, then SIGKILL after a grace period (Slurm's KillWait).""",
    )

    staging_python = Unicode(
        sys.executable,
        config=True,
        help="""Python interpreter, with hubgate installed and usable by every user, that
        creates staging folders as the user (``python -I -m
        hubgate.spawners.batch.staging``). Defaults to the service's own interpreter.""",
    )

    scheduler_on_service_host = Bool(
        False,
        config=True,
        help="""Run schedulers on the service's host through the local backend instead of
        as batch jobs; workers stay batch jobs. The scheduler then starts at once instead
        of waiting in the queue. The local backend is created with this backend's
        ``listen_host`` so that workers on compute nodes can reach it.""",
    )

    submit_command = List(
        Unicode(),
        config=True,
        help="""Command that submits a job script read from stdin, as an argument list
        (run after ``submit_as_user``). Default from batchspawner.""",
    )

    cancel_command = List(
        Unicode(),
        config=True,
        help="""Command that cancels a job, as an argument list with ``{job_id}``.
        Default from batchspawner.""",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._local: Backend | None = None

    # -- hooks for each batch system (abstract: checked when a subclass is defined) ----

    @abstractmethod
    def render_submission(self, request: JobRequest) -> Submission:
        """Everything this system is given to run ``request``: the job script with its
        directives, or a submit description and the script it runs. Pure: no I/O."""
        raise NotImplementedError

    def check_extra_line(self, line: str) -> str:
        """One extra line (``extra_directives``, the cluster's ``directives``) checked
        for this system: here a directive option such as ``--gres=gpu:1``."""
        return check_directive(line)

    @abstractmethod
    def parse_job_id(self, output: str) -> str:
        """The job id in the submit command's output (``JobParseError`` if none)."""
        raise NotImplementedError

    @abstractmethod
    async def query_jobs(
        self, job_ids: Sequence[str], prefix: Sequence[str] = ()
    ) -> dict[str, JobInfo]:
        """The states of ``job_ids`` in as few commands as possible; a job the system no
        longer knows is simply absent."""
        raise NotImplementedError

    async def finished_job(self, job_id: str) -> JobInfo | None:
        """How a job that left the queue ended, when the system still knows."""
        return None

    @abstractmethod
    def queue_and_project(self, resources: dict[str, Any]) -> tuple[str, str]:
        """The queue (partition) and project (QOS) for a job, from the cluster's
        resources or this backend's defaults."""
        raise NotImplementedError

    # -- the contract ------------------------------------------------------------------

    async def setup(self) -> None:
        if self.scheduler_on_service_host:
            await self._local_backend().setup()
        if not self.submit_as_user and os.geteuid() == 0:
            self.log.warning(
                "%s backend: submit_as_user is empty and the service runs as root, so "
                "every job runs as root; set it to run jobs as their users",
                self.system_name,
            )

    async def cleanup(self) -> None:
        if self._local is not None:
            await self._local.cleanup()

    async def start(self, spec: ProcessSpec) -> ProcessState:
        if spec.role == "scheduler" and self.scheduler_on_service_host:
            return {"local": await self._local_backend().start(spec)}
        account = await self._account(spec.username)
        staging = self._staging_path(account, spec)
        output = posixpath.join(staging, self.output_file)
        request = self.job_request(spec, account, staging, output)
        submission = self.render_submission(request)
        await self._prepare_staging(account, staging, {**spec.files, **submission.files})
        argv = [*self._prefix(account), *self._submit_command()]
        try:
            result = await self._run(argv, input=submission.text.encode())
            job_id = self.parse_job_id(result.stdout)
        except (BackendError, JobParseError) as exc:
            await self._clean_staging(account, staging)
            if isinstance(exc, JobParseError):
                raise BackendError(
                    f"the {self.system_name} job for {spec.name} of cluster "
                    f"{spec.cluster_name} was not submitted: {exc}"
                ) from exc
            raise
        self.log.info(
            "Submitted %s job %s: %s of cluster %s as %s",
            self.system_name,
            job_id,
            spec.name,
            spec.cluster_name,
            account.name,
        )
        return {
            "job_id": job_id,
            "staging_dir": staging,
            "output": output,
            "username": account.name,
        }

    async def poll(self, states: list[ProcessState]) -> list[ProcessStatus]:
        results: list[ProcessStatus | None] = [None] * len(states)
        local = [i for i, s in enumerate(states) if "local" in s]
        if local:
            statuses = await self._local_backend().poll([states[i]["local"] for i in local])
            for i, status in zip(local, statuses, strict=True):
                results[i] = status
        batch = [i for i, s in enumerate(states) if "local" not in s]
        infos = await self._query_states([states[i] for i in batch])
        gone: list[int] = []
        for i in batch:
            job_id = str(states[i].get("job_id") or "")
            info = infos.get(job_id)
            if info is None or info.phase is Phase.GONE:
                gone.append(i)
            elif info.phase is Phase.PENDING:
                results[i] = ProcessStatus(Phase.PENDING, self.pending_reason(info))
            else:
                results[i] = ProcessStatus(Phase.RUNNING)
        ended = await asyncio.gather(
            *(self._gone_status(states[i], infos.get(str(states[i].get("job_id")))) for i in gone)
        )
        for i, status in zip(gone, ended, strict=True):
            results[i] = status
        stuck = [i for i in gone if (info := infos.get(_job_id(states[i]))) and info.stuck]
        await asyncio.gather(*(self._cancel_stuck(states[i]) for i in stuck))
        return [r for r in results if r is not None]

    async def stop(self, state: ProcessState) -> None:
        if "local" in state:
            await self._local_backend().stop(state["local"])
            return
        if not _job_id(state):
            return
        account = self._stored_account(state)
        result = await self._run(self._cancel_argv(state), check=False)
        if result.returncode != 0 and await self._in_queue(state):
            raise failure(result)
        await self._wait_gone(state)
        if state.get("staging_dir"):
            await self._clean_staging(account, str(state["staging_dir"]))

    async def route_host(self, state: ProcessState) -> str:
        if "local" in state:
            return await self._local_backend().route_host(state["local"])
        job_id = str(state.get("job_id") or "")
        try:
            node = await self.job_node(state) if job_id else ""
        except BackendError as exc:
            # The query may run as the service and list everyone's jobs: its output is
            # for the operator, not for the user whose scheduler this is.
            self.log.warning("Cannot find the node of %s job %s: %s", self.system_name, job_id, exc)
            raise BackendError(
                f"{self.system_name} could not be asked which node job {job_id} runs on; "
                "an administrator can find why in the service log"
            ) from exc
        if not _NODE_NAME.fullmatch(node):
            raise BackendError(
                f"{self.system_name} does not say which node job {job_id or '?'} runs on"
                + (f" (it says {node!r})" if node else "")
            )
        return self.node_host.format(node=node)

    async def job_node(self, state: ProcessState) -> str:
        """The node a running job's script runs on, as the batch system names it ("" when
        it does not say)."""
        info = (await self._query_states([state])).get(str(state.get("job_id")))
        return info.node if info is not None else ""

    async def read_log(self, state: ProcessState, max_lines: int = 50) -> str | None:
        if "local" in state:
            return await self._local_backend().read_log(state["local"], max_lines)
        if not state.get("output"):
            return None
        return await self._read_file_tail(state, str(state["output"]), max_lines)

    # -- building the job --------------------------------------------------------------

    def job_request(
        self, spec: ProcessSpec, account: SystemAccount, staging: str, output: str
    ) -> JobRequest:
        """The job for ``spec``: site defaults overridden by the cluster's resources."""
        resources = dict(spec.resources)
        queue, project = self.queue_and_project(resources)
        account_name = str(resources.get("account") or self.account)
        walltime_text = str(resources.get("walltime") or self.walltime)
        directives = [self.check_extra_line(d) for d in self.extra_directives]
        extra = resources.get("directives") or []
        if isinstance(extra, str):
            extra = [line for line in extra.splitlines() if line.strip()]
        directives += [self.check_extra_line(str(d)) for d in extra]
        env = dict(spec.env)
        env.setdefault("HUBGATE_LISTEN_HOST", self.listen_host)
        env.setdefault("HUBGATE_EXIT_FILE", posixpath.join(staging, EXIT_FILE))
        env["HUBGATE_CREDENTIALS_DIR"] = staging
        return JobRequest(
            job_name=f"hubgate-{spec.cluster_name}-{spec.name}",
            output=output,
            workdir=account.home,
            cores=max(1, math.ceil(spec.cores)),
            memory_mib=max(1, math.ceil(spec.memory / 2**20)),
            argv=tuple(spec.argv),
            env=tuple(env.items()),
            setup=spec.setup,
            queue=check_directive_value("queue", queue),
            account=check_directive_value("account", account_name),
            project=check_directive_value("project", project),
            walltime_seconds=parse_walltime(walltime_text) if walltime_text else None,
            extra_directives=tuple(directives),
            advertise_host_command=tuple(self.advertise_host_command),
            shell=self.job_shell,
            user=account.name,
            folder=staging,
        )

    def pending_reason(self, info: JobInfo) -> str:
        return f"queued: {info.reason}" if info.reason else "queued"

    def ended_reason(self, job_id: str, final: JobInfo | None) -> str:
        """Why job ``job_id`` is gone, for the user, from the system's last word on it
        (``None`` when it no longer knows the job)."""
        if final is None:
            return f"{self.system_name} job {job_id} is no longer in the queue"
        reason = f"{self.system_name} job {job_id} ended ({final.state})"
        if final.signal:
            reason += f", killed by signal {final.signal}"
        elif final.exit_code is not None:
            reason += f" with exit code {final.exit_code}"
        return reason

    # -- helpers -----------------------------------------------------------------------

    def _submit_command(self) -> list[str]:
        return list(self.submit_command)

    def _cancel_command(self) -> list[str]:
        return list(self.cancel_command)

    def _cancel_argv(self, state: ProcessState) -> list[str]:
        prefix = self._prefix(self._stored_account(state)) if self.cancel_as_user else []
        return [*prefix, *(arg.format(job_id=_job_id(state)) for arg in self._cancel_command())]

    async def _cancel_stuck(self, state: ProcessState) -> None:
        """Cancel a job reported gone that its system still holds (HTCondor's held
        jobs), without waiting: the process has been reported gone already."""
        result = await self._run(self._cancel_argv(state), check=False)
        if result.returncode != 0:
            self.log.warning(
                "Could not cancel %s job %s: %s", self.system_name, _job_id(state), failure(result)
            )

    def _local_backend(self) -> Backend:
        if self._local is None:
            # Imported here: most batch services never run a scheduler locally.
            from ..local import LocalBackend

            # The scheduler runs here as the same system account as the jobs.
            self._local = LocalBackend(
                parent=self,
                log=self.log,
                listen_host=self.listen_host,
                account_mode="system",
                account_template=self.system_username,
                min_uid=self.min_uid,
            )
        return self._local

    def _system_username(self, hub_username: str) -> str:
        mapping = self.system_username
        name = mapping(hub_username) if callable(mapping) else mapping.format(username=hub_username)
        if not isinstance(name, str) or not _SYSTEM_USER.fullmatch(name):
            raise AccountRefused(
                f"the hub user {hub_username!r} has no valid system account name "
                f"({name!r}); ask an administrator to check system_username"
            )
        return name

    async def check_user(self, username: str) -> None:
        await self._account(username)

    async def _account(self, hub_username: str) -> SystemAccount:
        name = self._system_username(hub_username)
        loop = asyncio.get_running_loop()
        try:
            # pwd may ask LDAP: keep it off the event loop.
            account = await loop.run_in_executor(None, _lookup_account, name)
        except KeyError:
            raise AccountRefused(
                f"there is no system account {name!r} for the hub user {hub_username!r}: "
                "ask an administrator to create it (or to fix system_username)"
            ) from None
        # Never submit as root, slurm, another system account or the service itself.
        check_uid(account.uid, self.min_uid, hub_username, account.name, self.system_uid_ranges)
        return account

    def _stored_account(self, state: ProcessState) -> SystemAccount:
        # Stop, read_log and poll work from stored state only; uid/home are not needed.
        return SystemAccount(name=str(state.get("username") or ""), uid=-1, home="")

    def _staging_path(self, account: SystemAccount, spec: ProcessSpec) -> str:
        for what, value in (("cluster name", spec.cluster_name), ("process name", spec.name)):
            if not _PATH_PART.fullmatch(value) or value in (".", ".."):
                raise BackendError(f"{what} {value!r} cannot be used in a file name")
        path = self.staging_dir.format(
            home=account.home,
            username=account.name,
            cluster=spec.cluster_name,
            name=spec.name,
        )
        return posixpath.normpath(path)

    def _prefix(self, account: SystemAccount) -> list[str]:
        if not account.name:
            return []
        return [arg.format(username=account.name) for arg in self.submit_as_user]

    def _command_env(self) -> dict[str, str]:
        return {k: os.environ[k] for k in self.submit_environment if k in os.environ}

    async def _run(
        self, argv: Sequence[str], *, input: bytes | None = None, check: bool = True
    ) -> CommandResult:
        return await run_command(
            argv,
            limit_seconds=self.command_timeout,
            input=input,
            env=self._command_env(),
            check=check,
        )

    async def _prepare_staging(
        self, account: SystemAccount, staging: str, files: dict[str, bytes]
    ) -> None:
        payload = {
            "files": {k: base64.b64encode(v).decode() for k, v in files.items()},
            "remove": [self.output_file, EXIT_FILE, *self.system_files],
        }
        argv = [
            *self._prefix(account),
            self.staging_python,
            "-I",
            "-m",
            "hubgate.spawners.batch.staging",
            "prepare",
            staging,
        ]
        try:
            await self._run(argv, input=json.dumps(payload).encode())
        except CommandError as exc:
            raise BackendError(
                f"cannot prepare the folder {staging} for {account.name}'s job: {exc}"
            ) from exc

    async def _clean_staging(self, account: SystemAccount, staging: str) -> None:
        argv = [
            *self._prefix(account),
            self.staging_python,
            "-I",
            "-m",
            "hubgate.spawners.batch.staging",
            "clean",
            staging,
            *_CREDENTIAL_FILES,
            "token",
            DASHBOARD_SECRET_FILE,
        ]
        try:
            await self._run(argv)
        except BackendError as exc:
            # The job is gone either way; leftover keys are worth a warning, not a failure.
            self.log.warning("Could not remove the credentials in %s: %s", staging, exc)

    async def _query_states(self, states: list[ProcessState]) -> dict[str, JobInfo]:
        """Job infos for ``states``: one query for all (or one per user)."""
        groups: dict[str, list[str]] = {}
        for state in states:
            job_id = str(state.get("job_id") or "")
            if job_id:
                user = str(state.get("username") or "") if self.query_as_user else ""
                groups.setdefault(user, []).append(job_id)
        infos: dict[str, JobInfo] = {}
        for user, ids in groups.items():
            prefix = self._prefix(SystemAccount(user, -1, "")) if user else []
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), _QUERY_CHUNK):
                infos.update(await self.query_jobs(unique[start : start + _QUERY_CHUNK], prefix))
        return infos

    async def _in_queue(self, state: ProcessState) -> bool:
        info = (await self._query_states([state])).get(str(state.get("job_id")))
        return info is not None and info.phase is not Phase.GONE

    async def _wait_gone(self, state: ProcessState) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_timeout
        delay = 0.2
        while await self._in_queue(state):
            if loop.time() > deadline:
                raise BackendError(
                    f"{self.system_name} job {state.get('job_id')} is still in the queue "
                    f"{self.stop_timeout:g} s after it was cancelled"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _read_file_tail(self, state: ProcessState, path: str, max_lines: int) -> str | None:
        if os.geteuid() == 0 and not self.read_log_as_user:
            loop = asyncio.get_running_loop()
            owner = str(state.get("username") or "")
            try:
                return await loop.run_in_executor(None, _read_tail, path, max_lines, owner)
            except (PermissionError, KeyError):
                pass  # root squash, or not plainly the user's file: read it as the user
            except OSError as exc:
                self.log.warning("Cannot read %s: %s", path, exc)
                return None
        argv = [
            *self._prefix(self._stored_account(state)),
            "tail",
            "-n",
            str(max_lines),
            "--",
            path,
        ]
        result = await self._run(argv, check=False)
        if result.returncode == 0:
            return result.stdout
        if "No such file" in result.stderr:
            return None
        raise failure(result)

    async def _exit_record(self, state: ProcessState) -> Any:
        from hubgate.runtime.cluster_process import ExitRecord

        staging = state.get("staging_dir")
        if not staging:
            return None
        try:
            text = await self._read_file_tail(state, posixpath.join(str(staging), EXIT_FILE), 5)
            data = json.loads(text) if text else None
        except (BackendError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        return ExitRecord(
            exit_code=data.get("exit_code"),
            signal=data.get("signal"),
            reason=str(data.get("reason") or ""),
        )

    async def _gone_status(self, state: ProcessState, info: JobInfo | None) -> ProcessStatus:
        """Why a job left the queue, in words: the system's final state and exit code
        and the runtime's own exit record (the service adds the output's last lines)."""
        job_id = _job_id(state)
        if not job_id:
            return ProcessStatus(Phase.GONE, "no batch job was recorded for this process")
        # A stuck job is still in the queue: what the query said is all there is.
        final = info if info is not None and info.stuck else None
        final = final or await self.finished_job(job_id) or info
        record = await self._exit_record(state)
        exit_code = final.exit_code if final else None
        reason = self.ended_reason(job_id, final)
        if record is not None:
            reason += f"; the process {record.describe()}"
            if exit_code is None:
                exit_code = record.exit_code
        return ProcessStatus(Phase.GONE, reason, exit_code)


class QueueBackend(BatchBackend):
    """PBS, SGE and LSF call partitions queues and QOS-like things projects."""

    __abstract__ = True

    accepted_resources: ClassVar[dict[str, str]] = {
        **BatchBackend.accepted_resources,
        "queue": "the queue the jobs go to, instead of the backend's queue",
        "partition": "another name for queue",
        "project": "the project charged, instead of the backend's project",
    }

    queue = Unicode(
        "",
        config=True,
        help="""Queue the jobs go to; empty for the default queue. A cluster option
        ``queue`` overrides it.""",
    )

    project = Unicode(
        "",
        config=True,
        help="""Project the jobs are charged to (``-P``); empty for none. A cluster option
        ``project`` overrides it.""",
    )

    def queue_and_project(self, resources: dict[str, Any]) -> tuple[str, str]:
        queue = resources.get("queue") or resources.get("partition") or self.queue
        return str(queue), str(resources.get("project") or self.project)
