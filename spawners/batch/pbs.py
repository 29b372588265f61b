"""PBS Pro and Torque: ``qsub``/``qstat``/``qdel``, a job script with ``#PBS``
directives, and the parsers of ``qsub`` and ``qstat -f``."""

from __future__ import annotations

import re
from collections.abc import Sequence

from batchspawner.batchspawner import PBSSpawner
from traitlets import Bool, default

from ..base import Phase
from .base import QueueBackend, Submission
from .command import failure
from .parsing import JobInfo, batchspawner_command, ids_lost_only, job_id_or_error, trait_default
from .script import JobRequest, common_walltime, directive_lines, render_script

__all__ = [
    "PBSBackend",
    "parse_pbs_job_id",
    "parse_qstat_full",
    "pbs_directives",
]


def pbs_directives(request: JobRequest, *, torque: bool = False) -> list[str]:
    d = [f"-N {request.job_name}", f"-o {request.output}", "-j oe"]
    if torque:
        d += [f"-l nodes=1:ppn={request.cores}", f"-l mem={request.memory_mib}mb"]
    else:
        d.append(f"-l select=1:ncpus={request.cores}:mem={request.memory_mib}mb")
    if request.queue:
        d.append(f"-q {request.queue}")
    if request.account:
        d.append(f"-A {request.account}")
    if request.project and not torque:
        d.append(f"-P {request.project}")
    if request.walltime_seconds is not None:
        d.append(f"-l walltime={common_walltime(request)}")
    # PBS starts jobs in the home folder; -d (Torque) / cd below keep workdir explicit.
    if torque:
        d.append(f"-d {request.workdir}")
    return d + list(request.extra_directives)


_PBS_PENDING = re.compile(trait_default(PBSSpawner, "state_pending_re"))
_PBS_RUNNING = re.compile(trait_default(PBSSpawner, "state_running_re"))
# W: waiting for its start time, T: being moved, S/U: suspended.
_PBS_WAITING = set("WTSU")
# E: exiting (still on its node, running its epilogue).
_PBS_ENDING = set("E")


def parse_pbs_job_id(output: str) -> str:
    """``qsub`` prints the full job id, ``<sequence>.<server>``."""
    return job_id_or_error("qsub", lambda out: out.strip().splitlines()[-1], output)


def _qstat_blocks(output: str) -> list[tuple[str, dict[str, str]]]:
    """Split ``qstat -f`` output into ``(job id, attributes)``. Attribute lines are
    ``    name = value``; a long value continues on lines that start with a tab."""
    blocks: list[tuple[str, dict[str, str]]] = []
    attrs: dict[str, str] = {}
    last = ""
    for line in output.splitlines():
        if line.startswith("Job Id:"):
            attrs = {}
            last = ""
            blocks.append((line.split(":", 1)[1].strip(), attrs))
        elif line.startswith("\t") and last:
            attrs[last] += line.strip()
        elif " = " in line and blocks:
            name, value = line.strip().split(" = ", 1)
            attrs[name] = value
            last = name
    return blocks


def parse_qstat_full(output: str) -> dict[str, JobInfo]:
    """``qstat -f -x <ids>`` (PBS Pro; Torque's ``qstat -f`` has the same layout).

    Finished jobs show ``job_state = F`` (PBS Pro, with ``Exit_status``) or ``C`` (Torque,
    with ``exit_status``). Keys are the full job ids as printed (``123.server``).
    """
    jobs: dict[str, JobInfo] = {}
    for job_id, attrs in _qstat_blocks(output):
        state = attrs.get("job_state", "")
        line = f"job_state = {state}"
        if _PBS_RUNNING.search(line) or state in _PBS_ENDING:
            phase = Phase.RUNNING
        elif _PBS_PENDING.search(line) or state in _PBS_WAITING:
            phase = Phase.PENDING
        else:
            phase = Phase.GONE
        exit_code: int | None = None
        signal: int | None = None
        status = attrs.get("Exit_status", attrs.get("exit_status"))
        if status is not None and re.fullmatch(r"-?\d+", status):
            value = int(status)
            # PBS reports death by signal N as exit status 256 + N (PBS Pro) or 128 + N
            # (Torque's shell convention); negative values are PBS's own start failures.
            if value > 256:
                signal = value - 256
            else:
                exit_code = value
        jobs[job_id] = JobInfo(
            phase=phase,
            state=state,
            reason=attrs.get("comment", ""),
            exit_code=exit_code,
            signal=signal,
            # "node01/0*2+node02/0*2": the first host runs the job script
            node=attrs.get("exec_host", "").split("+", 1)[0].split("/", 1)[0],
        )
    return jobs


class PBSBackend(QueueBackend):
    """Each process is a PBS Pro or Torque job (``qsub``/``qstat``/``qdel``)."""

    backend_name = "pbs"
    system_name = "PBS"

    torque = Bool(
        False,
        config=True,
        help="""Write Torque resource requests (``-l nodes=1:ppn=N``, ``-l mem=``) instead
        of PBS Pro's (``-l select=1:ncpus=N:mem=``), and query with ``qstat -f`` (Torque
        keeps finished jobs as state C) instead of ``qstat -f -x``.""",
    )

    @default("submit_command")
    def _default_submit(self) -> list[str]:
        return batchspawner_command(PBSSpawner, "batch_submit_cmd")

    @default("cancel_command")
    def _default_cancel(self) -> list[str]:
        return batchspawner_command(PBSSpawner, "batch_cancel_cmd")

    def render_submission(self, request: JobRequest) -> Submission:
        header = directive_lines("#PBS", pbs_directives(request, torque=self.torque))
        return Submission(render_script(request, header))

    def parse_job_id(self, output: str) -> str:
        return parse_pbs_job_id(output)

    async def query_jobs(
        self, job_ids: Sequence[str], prefix: Sequence[str] = ()
    ) -> dict[str, JobInfo]:
        argv = [*prefix, "qstat", "-f", *([] if self.torque else ["-x"]), *job_ids]
        result = await self._run(argv, check=False)
        if result.returncode != 0 and not ids_lost_only(result.stderr, "Unknown Job Id"):
            raise failure(result)
        reported = parse_qstat_full(result.stdout)
        # qsub may print a shorter server name than qstat: match on the sequence number.
        by_number = {key.split(".", 1)[0]: info for key, info in reported.items()}
        return {
            job_id: reported.get(job_id) or by_number[job_id.split(".", 1)[0]]
            for job_id in job_ids
            if job_id in reported or job_id.split(".", 1)[0] in by_number
        }
