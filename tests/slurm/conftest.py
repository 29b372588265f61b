"""Fixtures for the Slurm backend tests: a real Slurm, a real user, real jobs.

- ``slurm`` (session): munged + slurmctld + slurmd in a fresh temporary folder (see
  ``slurm_cluster.py``), ``SLURM_CONF`` exported for the session.
- ``slurm_user`` (session): the system account ``hgalice`` with a home folder, able to run
  the venv's Python.
- ``make_backend``: a ``SlurmBackend`` factory; every job started through a backend it made
  is cancelled (as root) at the end of the test, whatever happened.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slurm_cluster import SlurmCluster, slurm_available

from hubgate.spawners.base import ProcessSpec, ProcessState
from hubgate.spawners.batch import SlurmBackend

TEST_USER = "hgalice"


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd and running jobs as another user needs root")
    if not slurm_available():
        pytest.skip("slurm-wlm and munge are not installed")
    cluster = SlurmCluster.start()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        cluster.stop()


def _user_can_run_python(user: str) -> bool:
    probe = [
        "runuser",
        "-u",
        user,
        "--",
        sys.executable,
        "-I",
        "-c",
        "import hubgate.runtime.cluster_process, distributed",
    ]
    return subprocess.run(probe, capture_output=True, cwd="/", timeout=120).returncode == 0


@pytest.fixture(scope="session")
def slurm_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("creating a system user needs root")
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", TEST_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(TEST_USER)
    if not _user_can_run_python(TEST_USER):
        # The venv's python links into /root/.pyenv, and /root is 0700 here: let other
        # users traverse /root (not list it) so they can run that interpreter.
        os.chmod("/root", os.stat("/root").st_mode | 0o001)
    if not _user_can_run_python(TEST_USER):
        pytest.fail(f"{TEST_USER} cannot run {sys.executable} with hubgate and distributed")
    return entry


class TrackedSlurmBackend(SlurmBackend):
    """A SlurmBackend that remembers the jobs it started, so the fixture can cancel them."""

    def __init__(self, started: list[ProcessState], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._started = started

    async def start(self, spec: ProcessSpec) -> ProcessState:
        state = await super().start(spec)
        self._started.append(state)
        return state


@pytest.fixture
def make_backend(
    slurm: SlurmCluster, slurm_user: pwd.struct_passwd
) -> Iterator[Callable[..., SlurmBackend]]:
    started: list[ProcessState] = []

    def factory(**traits: Any) -> SlurmBackend:
        traits.setdefault("stop_timeout", 120.0)
        return TrackedSlurmBackend(started, **traits)

    yield factory
    for state in started:
        if state.get("job_id"):
            slurm.run("scancel", str(state["job_id"]), check=False)
