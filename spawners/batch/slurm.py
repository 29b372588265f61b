"""Slurm (JASMIN's LOTUS): ``sbatch``/``squeue``/``scancel``, a job script with
``#SBATCH`` directives, and the parsers of ``sbatch``, ``squeue`` and ``scontrol``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from batchspawner.batchspawner import SlurmSpawner
from traitlets import List, Unicode, default

from ..base import Phase, ProcessState
from .base import BatchBackend, Submission, SystemAccount
from .command import failure
from .parsing import (
    JobInfo,
    batchspawner_command,
    ids_lost_only,
    job_id_or_error,
    spawner_shim,
    trait_default,
)
from .script import JobRequest, common_walltime, directive_lines, render_script

__all__ = [
    "SlurmBackend",
    "parse_scontrol_job",
    "parse_slurm_job_id",
    "parse_squeue",
    "slurm_directives",
]


def slurm_directives(request: JobRequest) -> list[str]:
    d = [
        f"--job-name={request.job_name}",
        f"--output={request.output}",
        f"--chdir={request.workdir}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={request.cores}",
        f"--mem={request.memory_mib}M",
    ]
    if request.queue:
        d.append(f"--partition={request.queue}")
    if request.account:
        d.append(f"--account={request.account}")
    if request.project:
        d.append(f"--qos={request.project}")
    if request.walltime_seconds is not None:
        d.append(f"--time={common_walltime(request)}")
    return d + list(request.extra_directives)


_SLURM_PENDING = re.compile(trait_default(SlurmSpawner, "state_pending_re"))
_SLURM_RUNNING = re.compile(trait_default(SlurmSpawner, "state_running_re"))
# Slurm's long state names (squeue %T) that still hold the job but run nothing of it.
_SLURM_WAITING = {"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "STOPPED"}


def parse_slurm_job_id(output: str) -> str:
    """``sbatch --parsable`` prints ``<id>`` or ``<id>;<cluster>``."""
    return job_id_or_error(
        "sbatch", lambda out: SlurmSpawner.parse_job_id(spawner_shim(), out.strip()), output
    )


def parse_squeue(output: str) -> dict[str, JobInfo]:
    """``squeue -h --states=all -j <ids> -o "%i %T %r"``: one ``id STATE reason`` line per
    job; the reason is ``None`` for a job that is not held back."""
    jobs: dict[str, JobInfo] = {}
    for line in output.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        job_id, state = parts[0], parts[1]
        reason = parts[2].strip() if len(parts) > 2 else ""
        if reason in ("None", "(null)"):
            reason = ""
        if _SLURM_RUNNING.match(state):
            phase = Phase.RUNNING
        elif _SLURM_PENDING.match(state) or state in _SLURM_WAITING:
            phase = Phase.PENDING
        else:
            phase = Phase.GONE
        jobs[job_id] = JobInfo(phase=phase, state=state, reason=reason)
    return jobs


def parse_scontrol_job(output: str) -> JobInfo | None:
    """``scontrol show job -o <id>``: ``Key=Value`` pairs on one line. ``ExitCode`` is
    ``<exit status>:<signal>``. ``None`` when the output holds no job."""
    fields = dict(re.findall(r"(\w[\w/:]*)=(\S*)", output))
    state = fields.get("JobState")
    if not state:
        return None
    exit_code: int | None = None
    signal: int | None = None
    code = re.fullmatch(r"(\d+):(\d+)", fields.get("ExitCode", ""))
    if code:
        exit_code, signal = int(code.group(1)), int(code.group(2))
        if signal:
            exit_code = None
        else:
            signal = None
    reason = fields.get("Reason", "")
    if reason in ("None", "(null)"):
        reason = ""
    phase = parse_squeue(f"0 {state}").get("0", JobInfo(Phase.GONE, state)).phase
    node = fields.get("BatchHost", "")
    return JobInfo(
        phase=phase,
        state=state,
        reason=reason,
        exit_code=exit_code,
        signal=signal,
        node="" if node in ("(null)", "None") else node,
    )


class SlurmBackend(BatchBackend):
    """Each scheduler and worker is a Slurm job (``sbatch``/``squeue``/``scancel``)."""

    backend_name = "slurm"
    system_name = "Slurm"
    accepted_resources: ClassVar[dict[str, str]] = {
        **BatchBackend.accepted_resources,
        "partition": "the Slurm partition, instead of SlurmBackend.partition",
        "queue": "another name for partition",
        "qos": "the Slurm quality of service, instead of SlurmBackend.qos",
    }

    partition = Unicode(
        "",
        config=True,
        help="""Slurm partition for the jobs (``--partition``); empty for the default
        partition. A cluster option ``partition`` (or ``queue``) overrides it.""",
    )

    qos = Unicode(
        "",
        config=True,
        help="""Slurm quality of service (``--qos``); empty for none. A cluster option
        ``qos`` overrides it.""",
    )

    query_command = List(
        Unicode(),
        default_value=["squeue", "-h", "--states=all", "-o", "%i %T %r", "-j", "{job_ids}"],
        config=True,
        help="""Command that lists the state of several jobs at once, as an argument list
        with ``{job_ids}`` (comma separated). Its output must be ``%i %T %r`` lines.
        ``--states=all`` keeps jobs that just ended visible with their final state.""",
    )

    finished_command = List(
        Unicode(),
        default_value=["scontrol", "show", "job", "-o", "{job_id}"],
        config=True,
        help="""Command that describes a job that has ended (state and ExitCode), as an
        argument list with ``{job_id}``.""",
    )

    @default("submit_command")
    def _default_submit(self) -> list[str]:
        return batchspawner_command(SlurmSpawner, "batch_submit_cmd")

    @default("cancel_command")
    def _default_cancel(self) -> list[str]:
        return batchspawner_command(SlurmSpawner, "batch_cancel_cmd")

    def queue_and_project(self, resources: dict[str, Any]) -> tuple[str, str]:
        queue = resources.get("partition") or resources.get("queue") or self.partition
        return str(queue), str(resources.get("qos") or self.qos)

    def render_submission(self, request: JobRequest) -> Submission:
        header = directive_lines("#SBATCH", slurm_directives(request))
        return Submission(render_script(request, header))

    def parse_job_id(self, output: str) -> str:
        return parse_slurm_job_id(output)

    async def query_jobs(
        self, job_ids: Sequence[str], prefix: Sequence[str] = ()
    ) -> dict[str, JobInfo]:
        argv = [*prefix, *(a.format(job_ids=",".join(job_ids)) for a in self.query_command)]
        result = await self._run(argv, check=False)
        if result.returncode != 0:
            # A lone id Slurm has forgotten: "Invalid job id specified" (exit 1).
            if ids_lost_only(result.stderr, "Invalid job id"):
                return {}
            raise failure(result)
        return parse_squeue(result.stdout)

    async def finished_job(self, job_id: str, prefix: Sequence[str] = ()) -> JobInfo | None:
        argv = [*prefix, *(a.format(job_id=job_id) for a in self.finished_command)]
        result = await self._run(argv, check=False)
        if result.returncode != 0:
            return None
        return parse_scontrol_job(result.stdout)

    async def job_node(self, state: ProcessState) -> str:
        # squeue's lines have no node; scontrol's BatchHost is the node of the script.
        user = str(state.get("username") or "") if self.query_as_user else ""
        prefix = self._prefix(SystemAccount(user, -1, "")) if user else []
        info = await self.finished_job(str(state.get("job_id")), prefix)
        return info.node if info is not None else ""
