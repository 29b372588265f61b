"""What every batch system's parsers share: :class:`JobInfo`, :class:`JobParseError`
and the helpers that call batchspawner's parsing.

Each system's own parsers live in its module (``slurm.py``, ``pbs.py``...) and are pure:
a command's stdout in, what it says out, tested on output written from the system's
documented formats in ``tests/batch_parsing/``. Where batchspawner already knows a format
(job-id parsers, state regular expressions, LSF's state tests) they call it; its query
commands ask about one job at a time and ours about many, so splitting the output into
jobs is ours.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ..base import Phase

__all__ = [
    "JobInfo",
    "JobParseError",
    "batchspawner_command",
    "ids_lost_only",
    "job_id_or_error",
    "spawner_shim",
    "trait_default",
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
    # Gone for good but still in the queue (an HTCondor job on hold): cancelled once
    # it has been reported, so that it does not wait there for ever.
    stuck: bool = False


def trait_default(cls: type, name: str) -> str:
    """A batchspawner trait's default value (a command, a state pattern)."""
    return str(cls.class_traits()[name].default_value)


def spawner_shim(**attrs: Any) -> SimpleNamespace:
    """Stands in for a batchspawner Spawner when calling its parsing methods, which only
    read ``job_status``/``job_id`` and log through ``log``."""
    return SimpleNamespace(log=log, **attrs)


def job_id_or_error(system: str, parse: Any, output: str) -> str:
    try:
        job_id = str(parse(output)).strip()
    except Exception as exc:
        raise JobParseError(f"cannot find a job id in the {system} output {output!r}") from exc
    if not job_id:
        raise JobParseError(f"cannot find a job id in the {system} output {output!r}")
    return job_id


def batchspawner_command(cls: type, trait: str) -> list[str]:
    """A batchspawner command default (``"scancel {job_id}"``) as an argv template."""
    return shlex.split(trait_default(cls, trait))


def ids_lost_only(stderr: str, marker: str) -> bool:
    """True when every stderr line only says that some job id is unknown."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return all(marker in ln for ln in lines)
