"""HTCondor: ``condor_submit``/``condor_q``/``condor_rm``, a submit description that runs
the job script staged in the job's folder, and the parsers of their output.

The job script (the same body as every system's: environment, setup, ``exec``) is a file
in the user's 0700 staging folder, run by ``executable = /bin/bash``: the environment
stays out of the submit description because a job's ClassAd, ``Environment`` included,
is readable by every user of the pool (``condor_q -l``). The pool must share that folder
with the execute nodes, as for the other systems (``should_transfer_files = NO``).

A held job (HTCondor holds a job it cannot start or that broke a policy, such as
``allowed_job_duration``) never runs again by itself: it is reported gone with its
``HoldReason`` and then removed from the queue.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from batchspawner.batchspawner import CondorSpawner
from traitlets import List, Unicode, default

from ..base import BackendError, Phase
from .base import BatchBackend, Submission
from .parsing import (
    JobInfo,
    batchspawner_command,
    job_id_or_error,
    spawner_shim,
    trait_default,
)
from .script import JobRequest, render_script

__all__ = [
    "HTCondorBackend",
    "check_submit_line",
    "parse_condor_history",
    "parse_condor_job_id",
    "parse_condor_q",
    "submit_description",
]

# The ClassAd attributes our queries print (-af:jt: job id, then tab-separated values).
_Q_FIELDS = ("JobStatus", "RemoteHost", "HoldReason")
_HISTORY_FIELDS = tuple(
    "JobStatus ExitBySignal ExitCode ExitSignal LastRemoteHost RemoveReason".split()
)
JOB_SCRIPT = "job.sh"
ERROR_FILE = "job.err"
EVENT_LOG = "job.log"

# The commands hubgate writes (and the job's owner and accounting identity): an extra
# line may add to them, not replace them.
_OWN_COMMANDS = set(
    "universe batch_name executable arguments args transfer_executable should_transfer_files "
    "initialdir getenv environment env output error log queue accounting_group "
    "accounting_group_user +accountinggroup +acctgroup +acctgroupuser +owner".split()
)
# ``name = value``; names like ``request_gpus``, ``+ProjectName`` or ``My.ProjectName``.
_SUBMIT_LINE = re.compile(r"(\+?[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(\S.*)?")


def check_submit_line(line: str) -> str:
    """An extra submit command: one ``name = value`` line that is not one of hubgate's."""
    line = line.strip()
    match = _SUBMIT_LINE.fullmatch(line)
    if match is None or any(c in line for c in "\n\r\0"):
        raise BackendError(
            f"extra submit line {line!r} is not allowed: give one 'name = value' line "
            "each (for example request_gpus = 1)"
        )
    if match.group(1).lower() in _OWN_COMMANDS:
        raise BackendError(
            f"extra submit line {line!r} is not allowed: hubgate sets {match.group(1)}"
        )
    return line


def submit_description(request: JobRequest) -> str:
    """The submit description of one job whose script is ``job.sh`` in its folder."""
    staging = request.folder
    if not staging:
        raise BackendError("an HTCondor job needs a staging folder for its script")
    lines = [
        "# Written by hubgate: one Dask process per batch job.",
        "universe = vanilla",
        f"batch_name = {request.job_name}",
        f"executable = {request.shell}",
        f'arguments = "{posixpath.join(staging, JOB_SCRIPT)}"',
        "transfer_executable = false",
        "should_transfer_files = NO",
        f"initialdir = {request.workdir}",
        "getenv = false",
        f"output = {request.output}",
        f"error = {posixpath.join(staging, ERROR_FILE)}",
        f"log = {posixpath.join(staging, EVENT_LOG)}",
        f"request_cpus = {request.cores}",
        f"request_memory = {request.memory_mib}M",
        "notification = never",
    ]
    if request.account:
        lines += [f"accounting_group = {request.account}"]
        if request.user:
            lines += [f"accounting_group_user = {request.user}"]
    if request.walltime_seconds is not None:
        lines.append(f"allowed_job_duration = {request.walltime_seconds}")
    lines += [check_submit_line(line) for line in request.extra_directives]
    return "\n".join([*lines, "queue 1", ""])


def parse_condor_job_id(output: str) -> str:
    """``condor_submit`` prints ``1 job(s) submitted to cluster 1234.``; with ``-terse``,
    ``1234.0 - 1234.0``. The job id is the cluster id (one job per cluster)."""

    def parse(out: str) -> str:
        terse = re.match(r"\s*(\d+)\.\d+ - \d+\.\d+", out)
        return terse.group(1) if terse else CondorSpawner.parse_job_id(spawner_shim(), out)

    return job_id_or_error("condor_submit", parse, output)


_CONDOR_PENDING = re.compile(trait_default(CondorSpawner, "state_pending_re"))
_CONDOR_RUNNING = re.compile(trait_default(CondorSpawner, "state_running_re"))
# JobStatus codes: the manual's "JobStatus" ClassAd attribute.
_STATES = dict(enumerate("idle running removed completed held".split(), start=1))
_STATES.update({6: "transferring output", 7: "suspended"})


def _value(text: str) -> str:
    return "" if text in ("undefined", "") else text


def _node(remote_host: str) -> str:
    # "slot1_2@node01.example.org": the slot's machine
    return _value(remote_host).rpartition("@")[2]


def _info(code: str, remote_host: str, reason: str) -> JobInfo:
    state = _STATES.get(int(code) if code.isdigit() else 0, f"status {code}")
    if _CONDOR_RUNNING.match(f"{code},") or code == "6":
        return JobInfo(Phase.RUNNING, state, node=_node(remote_host))
    if _CONDOR_PENDING.match(f"{code},") or code == "7":
        return JobInfo(Phase.PENDING, state)
    return JobInfo(Phase.GONE, state, reason=reason, stuck=code == "5")


def parse_condor_q(output: str) -> dict[str, JobInfo]:
    """``condor_q -af:jt JobStatus RemoteHost HoldReason <ids>``: one tab-separated line
    per job, ``<cluster>.<proc>`` first, ``undefined`` for a missing attribute. Keys are
    cluster ids; a held job is gone with its ``HoldReason``, and stuck in the queue."""
    jobs: dict[str, JobInfo] = {}
    for line in output.splitlines():
        parts = line.split("\t", 3)
        if len(parts) < 2 or not re.fullmatch(r"\d+\.\d+", parts[0]):
            continue
        parts += [""] * (4 - len(parts))
        reason = _value(parts[3].strip()) if parts[1] == "5" else ""
        jobs[parts[0].split(".")[0]] = _info(parts[1], parts[2], reason)
    return jobs


def parse_condor_history(output: str) -> JobInfo | None:
    """``condor_history -af:jt JobStatus ExitBySignal ExitCode ExitSignal LastRemoteHost
    RemoveReason -limit 1 <id>``: the job's last line, or ``None`` when it has none."""
    parts = next((ln.split("\t", 6) for ln in output.splitlines() if "\t" in ln), None)
    if parts is None or len(parts) < 7 or not re.fullmatch(r"\d+\.\d+", parts[0]):
        return None
    _, code, by_signal, exit_code, exit_signal, host, remove_reason = parts
    info = _info(code, "", _value(remove_reason.strip()))
    signal = int(exit_signal) if by_signal == "true" and exit_signal.isdigit() else None
    code_value = int(exit_code) if signal is None and exit_code.isdigit() else None
    return JobInfo(
        info.phase, info.state, info.reason, code_value, signal, node=_node(host), stuck=info.stuck
    )


class HTCondorBackend(BatchBackend):
    """Each scheduler and worker is an HTCondor job (``condor_submit``/``condor_q``/
    ``condor_rm``) in the vanilla universe, submitted as the job's user."""

    backend_name = "htcondor"
    system_name = "HTCondor"
    system_files = (ERROR_FILE, EVENT_LOG)
    accepted_resources: ClassVar[dict[str, str]] = {
        "account": "the accounting group charged, instead of HTCondorBackend.account",
        "walltime": "the jobs' allowed_job_duration, instead of HTCondorBackend.walltime",
        "directives": "extra submit description lines (a list, or lines of text)",
    }

    account = Unicode(
        "",
        config=True,
        help="""Accounting group charged for the jobs (``accounting_group``, with the
        job's system user as ``accounting_group_user``); empty for the pool's default. A
        cluster option ``account`` overrides it.""",
    )

    walltime = Unicode(
        "",
        config=True,
        help="""How long each job may run (``allowed_job_duration``): ``HH:MM:SS``,
        ``D-HH:MM:SS`` or whole minutes; empty for no limit. HTCondor holds a job that
        runs longer, and the service reports it as failed with the hold reason.""",
    )

    extra_directives = List(
        Unicode(),
        config=True,
        help="""Site-specific lines added to every submit description, each one
        ``name = value`` command, e.g. ``["requirements = (OpSys == \\"LINUX\\")",
        "+ProjectName = \\"dask\\""]``. The commands hubgate writes (executable, output,
        log, queue...) cannot be replaced. Cluster options may add more through
        ``resources["directives"]``.""",
    )

    @default("submit_command")
    def _default_submit(self) -> list[str]:
        return batchspawner_command(CondorSpawner, "batch_submit_cmd")

    @default("cancel_command")
    def _default_cancel(self) -> list[str]:
        return batchspawner_command(CondorSpawner, "batch_cancel_cmd")

    def check_extra_line(self, line: str) -> str:
        return check_submit_line(line)

    def queue_and_project(self, resources: dict[str, Any]) -> tuple[str, str]:
        return "", ""  # HTCondor matches jobs to machines: there are no queues to name

    def render_submission(self, request: JobRequest) -> Submission:
        # The event log and error file are HTCondor's; the service reads job.out.
        script = render_script(request, merge_stderr=True)
        return Submission(submit_description(request), {JOB_SCRIPT: script.encode()})

    def parse_job_id(self, output: str) -> str:
        return parse_condor_job_id(output)

    def pending_reason(self, info: JobInfo) -> str:
        return "suspended" if info.state == "suspended" else super().pending_reason(info)

    def ended_reason(self, job_id: str, final: JobInfo | None) -> str:
        if final is not None and final.stuck:
            why = final.reason or "HTCondor gave no reason"
            return f"HTCondor job {job_id} was put on hold, and removed: {why}"
        return super().ended_reason(job_id, final)

    async def query_jobs(
        self, job_ids: Sequence[str], prefix: Sequence[str] = ()
    ) -> dict[str, JobInfo]:
        argv = [*prefix, "condor_q", "-allusers", "-af:jt", *_Q_FIELDS, *job_ids]
        return parse_condor_q((await self._run(argv)).stdout)

    async def finished_job(self, job_id: str) -> JobInfo | None:
        argv = ["condor_history", "-af:jt", *_HISTORY_FIELDS, "-limit", "1", job_id]
        result = await self._run(argv, check=False)
        return parse_condor_history(result.stdout) if result.returncode == 0 else None
