"""The backend contract is checked when a backend class is defined, for every subclass:
a backend missing a hook cannot be defined, whichever base it comes from."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

import pytest

from hubgate.spawners import kubernetes, local
from hubgate.spawners.base import (
    Backend,
    ProcessSpec,
    ProcessState,
    ProcessStatus,
    missing_hooks,
)
from hubgate.spawners.batch import htcondor, lsf, pbs, sge, slurm
from hubgate.spawners.batch.base import BatchBackend, QueueBackend, Submission
from hubgate.spawners.batch.parsing import JobInfo
from hubgate.spawners.batch.script import JobRequest
from hubgate.spawners.batch.slurm import SlurmBackend


class _Starts:
    """Implementations of two of the four hooks of Backend."""

    async def start(self, spec: ProcessSpec) -> ProcessState:
        return {}

    async def stop(self, state: ProcessState) -> None:
        return None


def test_a_direct_backend_missing_hooks_cannot_be_defined() -> None:
    with pytest.raises(TypeError) as info:

        class HalfBackend(_Starts, Backend):
            pass

    message = str(info.value)
    assert "HalfBackend" in message
    assert "does not implement poll, read_log" in message


def test_a_complete_direct_backend_can_be_defined() -> None:
    class WholeBackend(_Starts, Backend):
        async def poll(self, states: list[ProcessState]) -> list[ProcessStatus]:
            return []

        async def read_log(self, state: ProcessState, max_lines: int = 50) -> str | None:
            return None

    assert missing_hooks(WholeBackend) == []


def test_a_batch_backend_missing_the_system_hooks_cannot_be_defined() -> None:
    # The batch base implements the four Backend hooks but declares its own per-system
    # ones; before, its __abstract__ flag was inherited and this class was not checked.
    with pytest.raises(TypeError) as info:

        class NoCommandsBackend(BatchBackend):
            backend_name = "nocommands"

            def parse_job_id(self, output: str) -> str:
                return output.strip()

    message = str(info.value)
    assert "NoCommandsBackend" in message
    assert "query_jobs, queue_and_project, render_submission" in message
    assert "parse_job_id" not in message


def test_a_queue_system_backend_missing_a_hook_cannot_be_defined() -> None:
    # PBS, SGE and LSF share an abstract base of their own (queues and projects).
    with pytest.raises(TypeError, match="HalfQueueBackend does not implement query_jobs:"):

        class HalfQueueBackend(QueueBackend):
            def render_submission(self, request: JobRequest) -> Submission:
                return Submission("")

            def parse_job_id(self, output: str) -> str:
                return output.strip()


def test_a_subclass_of_an_abstract_base_is_checked_again() -> None:
    """``__abstract__ = True`` exempts the class that says it, not its subclasses."""

    class SiteBase(_Starts, Backend):
        __abstract__ = True

    assert missing_hooks(SiteBase) == ["poll", "read_log"]
    with pytest.raises(TypeError, match="SiteBackend does not implement poll, read_log"):

        class SiteBackend(SiteBase):
            pass


def test_a_slurm_subclass_missing_a_hook_its_base_adds_cannot_be_defined() -> None:
    """A site's Slurm base may add hooks of its own; its subclasses must write them."""

    class SiteSlurmBase(SlurmBackend):
        __abstract__ = True

        @abstractmethod
        def site_account(self, username: str) -> str:
            """The allocation a user's jobs are charged to at this site."""

    with pytest.raises(TypeError, match="SiteSlurmBackend does not implement site_account"):

        class SiteSlurmBackend(SiteSlurmBase):
            pass

    class WorkingSiteSlurmBackend(SiteSlurmBase):
        def site_account(self, username: str) -> str:
            return f"{username}-allocation"

    assert missing_hooks(WorkingSiteSlurmBackend) == []


def test_a_slurm_subclass_that_undoes_a_hook_cannot_be_defined() -> None:
    with pytest.raises(TypeError, match="BrokenSlurmBackend does not implement query_jobs"):

        class BrokenSlurmBackend(SlurmBackend):
            @abstractmethod
            async def query_jobs(
                self, job_ids: Sequence[str], prefix: Sequence[str] = ()
            ) -> dict[str, JobInfo]:
                """Left for a subclass by mistake."""


def _shipped_backends() -> list[type[Backend]]:
    seen: list[type[Backend]] = []
    pending: list[type[Any]] = [Backend]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__.startswith("hubgate.spawners.") and sub not in seen:
                seen.append(sub)
            pending.append(sub)
    return seen


def test_every_shipped_backend_fulfils_the_contract() -> None:
    assert {local, kubernetes, slurm, pbs, sge, lsf, htcondor}  # their classes are defined
    shipped = _shipped_backends()
    concrete = [cls for cls in shipped if not cls.__dict__.get("__abstract__", False)]
    names = {cls.__name__ for cls in concrete}
    assert {
        "LocalBackend",
        "UnsafeLocalBackend",
        "SlurmBackend",
        "PBSBackend",
        "SGEBackend",
        "LSFBackend",
        "HTCondorBackend",
        "KubernetesBackend",
    } <= names
    assert {cls.__name__: missing_hooks(cls) for cls in concrete} == {
        cls.__name__: [] for cls in concrete
    }
    # and what configuration names resolves to a concrete backend
    for entry in entry_points(group="hubgate.backends"):
        cls = entry.load()
        assert cls in concrete, entry
