"""Pure parsers for the output of Slurm, PBS/Torque, SGE and LSF commands.

No I/O here: each function takes a command's stdout and returns what it says, so every
format is tested against captured output in ``tests/batch_parsing/``.

Where batchspawner already knows a format, we call it: its job-id parsers
(``SlurmSpawner.parse_job_id``, ``GridengineSpawner.parse_job_id``,
``LsfSpawner.parse_job_id``), its state regular expressions (``state_pending_re`` and
``state_running_re`` of ``SlurmSpawner`` and ``PBSSpawner``) and its LSF state tests.
Its query commands ask about one job at a time; ours ask about many at once, so the
splitting of the output into jobs is ours.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from batchspawner.batchspawner import (
    GridengineSpawner,
    LsfSpawner,
    PBSSpawner,
    SlurmSpawner,
)

from .base import Phase

__all__ = [
    "JobInfo",
    "JobParseError",
    "parse_bjobs",
    "parse_lsf_job_id",
    "parse_pbs_job_id",
    "parse_qacct",
    "parse_qstat_full",
    "parse_qstat_xml",
    "parse_scontrol_job",
    "parse_sge_job_id",
    "parse_slurm_job_id",
    "parse_squeue",
]

log = logging.getLogger(__name__)


class JobParseError(ValueError):
    """A command's output does not look like what the batch system documents."""


@dataclass(frozen=True)
class JobInfo:
    """One job as the batch system reports it.

    ``state`` is the system's own word for it (``PENDING``, ``R``, ``qw``, ``EXIT``);
    ``reason`` the system's explanation when it gives one (Slurm's queue reason, PBS's
    comment, LSF's pending reason); ``exit_code``/``signal`` when the job has ended and
    the system says how; ``node`` the host the job runs on (its first, where the batch
    script runs) while the system says so.
    """

    phase: Phase
    state: str
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    node: str = ""


def _trait_default(cls: type, name: str) -> str:
    return str(cls.class_traits()[name].default_value)


def _shim(**attrs: Any) -> SimpleNamespace:
    """Stands in for a batchspawner Spawner when calling its parsing methods, which only
    read ``job_status``/``job_id`` and log through ``log``."""
    return SimpleNamespace(log=log, **attrs)


def _job_id_or_error(system: str, parse: Any, output: str) -> str:
    try:
        job_id = str(parse(output)).strip()
    except Exception as exc:
        raise JobParseError(f"cannot find a job id in the {system} output {output!r}") from exc
    if not job_id:
        raise JobParseError(f"cannot find a job id in the {system} output {output!r}")
    return job_id


# -- Slurm -----------------------------------------------------------------------------

_SLURM_PENDING = re.compile(_trait_default(SlurmSpawner, "state_pending_re"))
_SLURM_RUNNING = re.compile(_trait_default(SlurmSpawner, "state_running_re"))
# Slurm's long state names (squeue %T) that still hold the job but run nothing of it.
_SLURM_WAITING = {"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "STOPPED"}


def parse_slurm_job_id(output: str) -> str:
    """``sbatch --parsable`` prints ``<id>`` or ``<id>;<cluster>``."""
    return _job_id_or_error(
        "sbatch", lambda out: SlurmSpawner.parse_job_id(_shim(), out.strip()), output
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


# -- PBS Pro / Torque ------------------------------------------------------------------

_PBS_PENDING = re.compile(_trait_default(PBSSpawner, "state_pending_re"))
_PBS_RUNNING = re.compile(_trait_default(PBSSpawner, "state_running_re"))
# W: waiting for its start time, T: being moved, S/U: suspended.
_PBS_WAITING = set("WTSU")
# E: exiting (still on its node, running its epilogue).
_PBS_ENDING = set("E")


def parse_pbs_job_id(output: str) -> str:
    """``qsub`` prints the full job id, ``<sequence>.<server>``."""
    return _job_id_or_error("qsub", lambda out: out.strip().splitlines()[-1], output)


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


# -- SGE (Grid Engine) -----------------------------------------------------------------


def parse_sge_job_id(output: str) -> str:
    """``qsub`` prints ``Your job 123 ("name") has been submitted``."""
    return _job_id_or_error(
        "qsub",
        lambda out: GridengineSpawner.parse_job_id(_shim(), out.strip().splitlines()[-1]),
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


# -- LSF -------------------------------------------------------------------------------

# batchspawner's pending set is {"PEND", "PUSP"}: "PUSP" is a typo for PSUSP (suspended
# while pending), so list the suspended and waiting states ourselves.
_LSF_WAITING = {"PSUSP", "USUSP", "SSUSP", "WAIT"}

#: The ``bjobs -o`` field list our query asks for; the parser below expects it.
BJOBS_FIELDS = "jobid stat exit_code exec_host pend_reason delimiter='|'"


def parse_lsf_job_id(output: str) -> str:
    """``bsub`` prints ``Job <1815> is submitted to queue <normal>.``"""
    line = next((ln for ln in output.splitlines() if ln.startswith("Job <")), "")
    return _job_id_or_error("bsub", lambda out: LsfSpawner.parse_job_id(_shim(), out), line)


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
        status = _shim(job_status=f"{state} -")
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
