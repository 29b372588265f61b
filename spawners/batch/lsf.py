"""IBM Spectrum LSF: ``bsub``/``bjobs``/``bkill``, a job script with ``#BSUB``
directives, and the parsers of ``bsub`` and ``bjobs -o``."""

from __future__ import annotations

from collections.abc import Sequence

from batchspawner.batchspawner import LsfSpawner
from traitlets import default

from ..base import Phase
from .base import QueueBackend, Submission
from .command import failure
from .parsing import JobInfo, batchspawner_command, ids_lost_only, job_id_or_error, spawner_shim
from .script import JobRequest, common_walltime, directive_lines, render_script

__all__ = [
    "BJOBS_FIELDS",
    "LSFBackend",
    "lsf_directives",
    "parse_bjobs",
    "parse_lsf_job_id",
]


def lsf_directives(request: JobRequest) -> list[str]:
    d = [
        f"-J {request.job_name}",
        f"-o {request.output}",
        f"-cwd {request.workdir}",
        f"-n {request.cores}",
        '-R "span[hosts=1]"',
        f'-R "rusage[mem={request.memory_mib}MB]"',
        f"-M {request.memory_mib}MB",
    ]
    if request.queue:
        d.append(f"-q {request.queue}")
    if request.project:
        d.append(f"-P {request.project}")
    if request.account:
        # LSF has no accounts; its service classes / fair-share groups come closest.
        d.append(f"-G {request.account}")
    if request.walltime_seconds is not None:
        d.append(f"-W {common_walltime(request, with_seconds=False)}")
    return d + list(request.extra_directives)


# batchspawner's pending set is {"PEND", "PUSP"}: "PUSP" is a typo for PSUSP (suspended
# while pending), so list the suspended and waiting states ourselves.
_LSF_WAITING = {"PSUSP", "USUSP", "SSUSP", "WAIT"}

#: The ``bjobs -o`` field list our query asks for; the parser below expects it.
BJOBS_FIELDS = "jobid stat exit_code exec_host pend_reason delimiter='|'"


def parse_lsf_job_id(output: str) -> str:
    """``bsub`` prints ``Job <1815> is submitted to queue <normal>.``"""
    line = next((ln for ln in output.splitlines() if ln.startswith("Job <")), "")
    return job_id_or_error("bsub", lambda out: LsfSpawner.parse_job_id(spawner_shim(), out), line)


def parse_bjobs(output: str) -> dict[str, JobInfo]:
    """``bjobs -a -noheader -o "jobid stat exit_code exec_host pend_reason
    delimiter='|'" <ids>``.

    Unknown ids are reported on stderr (``Job <7> is not found``), not here. ``-`` stands
    for an empty field. ``exec_host`` is ``node01`` or ``4*node01:2*node02``.
    """
    jobs: dict[str, JobInfo] = {}
    for line in output.splitlines():
        parts = [p.strip() for p in line.split("|", 4)]
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        job_id, state = parts[0], parts[1].upper()
        exit_text = parts[2] if len(parts) > 2 else "-"
        hosts = parts[3] if len(parts) > 3 else "-"
        node = "" if hosts == "-" else hosts.split(":", 1)[0].rpartition("*")[2]
        reason = parts[4] if len(parts) > 4 else ""
        reason = "" if reason == "-" else reason.rstrip(";")
        status = spawner_shim(job_status=f"{state} -")
        if LsfSpawner.state_isrunning(status) or state == "UNKWN":
            phase = Phase.RUNNING
        elif LsfSpawner.state_ispending(status) or state in _LSF_WAITING:
            phase = Phase.PENDING
        else:
            phase = Phase.GONE
        exit_code: int | None = None
        signal: int | None = None
        if exit_text.isdigit():
            exit_code = int(exit_text)
            if exit_code > 128:
                exit_code, signal = None, exit_code - 128
        elif state == "DONE":
            exit_code = 0
        jobs[job_id] = JobInfo(
            phase=phase, state=state, reason=reason, exit_code=exit_code, signal=signal, node=node
        )
    return jobs


class LSFBackend(QueueBackend):
    """Each process is an IBM Spectrum LSF job (``bsub``/``bjobs``/``bkill``)."""

    backend_name = "lsf"
    system_name = "LSF"

    @default("submit_command")
    def _default_submit(self) -> list[str]:
        return batchspawner_command(LsfSpawner, "batch_submit_cmd")

    @default("cancel_command")
    def _default_cancel(self) -> list[str]:
        return batchspawner_command(LsfSpawner, "batch_cancel_cmd")

    def render_submission(self, request: JobRequest) -> Submission:
        header = directive_lines("#BSUB", lsf_directives(request))
        return Submission(render_script(request, header))

    def parse_job_id(self, output: str) -> str:
        return parse_lsf_job_id(output)

    def pending_reason(self, info: JobInfo) -> str:
        if info.state in ("PSUSP", "USUSP", "SSUSP"):
            return f"suspended ({info.state})"
        return super().pending_reason(info)

    async def query_jobs(
        self, job_ids: Sequence[str], prefix: Sequence[str] = ()
    ) -> dict[str, JobInfo]:
        argv = [*prefix, "bjobs", "-a", "-noheader", "-o", BJOBS_FIELDS, *job_ids]
        result = await self._run(argv, check=False)
        if result.returncode != 0 and not ids_lost_only(result.stderr, "is not found"):
            raise failure(result)
        return parse_bjobs(result.stdout)
