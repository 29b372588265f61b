"""(Son of / Univa / Altair) Grid Engine: ``qsub``/``qstat``/``qdel``/``qacct``, a job
script with ``#$`` directives, and the parsers of ``qsub``, ``qstat -xml`` and ``qacct``."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from batchspawner.batchspawner import GridengineSpawner
from traitlets import Unicode, default

from ..base import BackendError, Phase
from .base import QueueBackend, Submission
from .parsing import JobInfo, JobParseError, batchspawner_command, job_id_or_error, spawner_shim
from .script import JobRequest, common_walltime, directive_lines, render_script

__all__ = [
    "SGEBackend",
    "parse_qacct",
    "parse_qstat_xml",
    "parse_sge_job_id",
    "sge_directives",
]


def sge_directives(
    request: JobRequest, *, parallel_environment: str = "smp", memory_resource: str = "h_vmem"
) -> list[str]:
    d = [
        f"-N {request.job_name}",
        f"-o {request.output}",
        "-j y",
        f"-S {request.shell}",
        f"-wd {request.workdir}",
    ]
    if parallel_environment and request.cores > 1:
        d.append(f"-pe {parallel_environment} {request.cores}")
    if memory_resource:
        # Grid Engine memory requests are per slot.
        per_slot = math.ceil(request.memory_mib / request.cores)
        d.append(f"-l {memory_resource}={per_slot}M")
    if request.queue:
        d.append(f"-q {request.queue}")
    if request.account:
        d.append(f"-A {request.account}")
    if request.project:
        d.append(f"-P {request.project}")
    if request.walltime_seconds is not None:
        d.append(f"-l h_rt={common_walltime(request)}")
    return d + list(request.extra_directives)


def parse_sge_job_id(output: str) -> str:
    """``qsub`` prints ``Your job 123 ("name") has been submitted``."""
    return job_id_or_error(
        "qsub",
        lambda out: GridengineSpawner.parse_job_id(spawner_shim(), out.strip().splitlines()[-1]),
        output,
    )


def parse_qstat_xml(output: str) -> dict[str, JobInfo]:
    """``qstat -xml -u '*'``: ``<job_list state="running|pending">`` elements with
    ``JB_job_number`` and the short state code (``r``, ``qw``, ``hqw``, ``Eqw``, ``dr``,
    ``s``...). A job in error state (``E``) never runs: it counts as gone."""
    try:
        root = ET.fromstring(output)
    except ET.ParseError as exc:
        raise JobParseError(f"qstat printed something that is not XML: {exc}") from exc
    jobs: dict[str, JobInfo] = {}
    for job in root.iter("job_list"):
        job_id = (job.findtext("JB_job_number") or "").strip()
        code = (job.findtext("state") or "").strip()
        if not job_id:
            continue
        if "E" in code:
            phase, reason = Phase.GONE, "in error state (see qstat -j)"
        elif "h" in code:
            phase, reason = Phase.PENDING, "held"
        elif any(c in code for c in "sST"):
            phase, reason = Phase.PENDING, "suspended"
        elif job.get("state") == "running" or "r" in code or "t" in code or "d" in code:
            phase, reason = Phase.RUNNING, ""
        else:
            phase, reason = Phase.PENDING, ""
        # "all.q@node01": the queue instance the job (its master task) runs in
        queue = (job.findtext("queue_name") or "").strip()
        node = queue.rpartition("@")[2] if "@" in queue else ""
        jobs[job_id] = JobInfo(phase=phase, state=code, reason=reason, node=node)
    return jobs


def parse_qacct(output: str) -> JobInfo | None:
    """``qacct -j <id>``: ``name   value`` lines for a finished job (the last run when
    the job ran more than once). ``exit_status`` above 128 means killed by a signal."""
    fields: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("===="):
            fields = {}
            continue
        parts = line.split(None, 1)
        if len(parts) == 2:
            fields[parts[0]] = parts[1].strip()
    status = fields.get("exit_status", "")
    if not re.fullmatch(r"\d+", status):
        return None
    value = int(status)
    failed = fields.get("failed", "0")
    reason = "" if failed.startswith("0") else f"failed: {failed}"
    if value > 128:
        return JobInfo(Phase.GONE, "finished", reason=reason, signal=value - 128)
    return JobInfo(Phase.GONE, "finished", reason=reason, exit_code=value)


class SGEBackend(QueueBackend):
    """Each process is a (Son of / Univa / Altair) Grid Engine job."""

    backend_name = "sge"
    system_name = "SGE"

    parallel_environment = Unicode(
        "smp",
        config=True,
        help="""Parallel environment for jobs with more than one core (``-pe <pe> N``);
        empty to request cores otherwise (e.g. through ``extra_directives``).""",
    )

    memory_resource = Unicode(
        "h_vmem",
        config=True,
        help="""Resource that requests memory per slot (``-l h_vmem=...``), such as
        ``h_vmem``, ``mem_free`` or ``m_mem_free``; empty to request none.""",
    )

    @default("submit_command")
    def _default_submit(self) -> list[str]:
        return batchspawner_command(GridengineSpawner, "batch_submit_cmd")

    @default("cancel_command")
    def _default_cancel(self) -> list[str]:
        return batchspawner_command(GridengineSpawner, "batch_cancel_cmd")

    def render_submission(self, request: JobRequest) -> Submission:
        header = directive_lines(
            "#$",
            sge_directives(
                request,
                parallel_environment=self.parallel_environment,
                memory_resource=self.memory_resource,
            ),
        )
        return Submission(render_script(request, header))

    def parse_job_id(self, output: str) -> str:
        return parse_sge_job_id(output)

    def pending_reason(self, info: JobInfo) -> str:
        # qstat -xml gives no queue reason, only "held" or "suspended" from the code.
        return info.reason or "queued"

    async def query_jobs(
        self, job_ids: Sequence[str], prefix: Sequence[str] = ()
    ) -> dict[str, JobInfo]:
        # qstat lists everyone's jobs with -u '*' (no shell here, so no quotes).
        result = await self._run([*prefix, "qstat", "-xml", "-u", "*"])
        wanted = set(job_ids)
        try:
            return {k: v for k, v in parse_qstat_xml(result.stdout).items() if k in wanted}
        except JobParseError as exc:
            raise BackendError(f"cannot read the output of qstat: {exc}") from exc

    async def finished_job(self, job_id: str) -> JobInfo | None:
        result = await self._run(["qacct", "-j", job_id], check=False)
        return parse_qacct(result.stdout) if result.returncode == 0 else None
