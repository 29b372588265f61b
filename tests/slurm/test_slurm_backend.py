"""The Slurm backend against a real Slurm: jobs as the user, states, failures, stop."""

from __future__ import annotations

import asyncio
import json
import pwd
import sys
from pathlib import Path

import pytest

from hubgate.spawners.base import BackendError, Phase, ProcessSpec, ProcessStatus
from hubgate.spawners.batch import SlurmBackend

pytestmark = pytest.mark.slow

USER = "hgalice"


def sleeper(name: str, **kwargs) -> ProcessSpec:
    """A job that prints a line and then waits, standing in for a worker."""
    kwargs.setdefault("files", {"token": b"not-a-real-token\n"})
    kwargs.setdefault("memory", 200 * 2**20)
    return ProcessSpec(
        cluster_name="c1",
        role="worker",
        name=name,
        username=USER,
        argv=[sys.executable, "-c", "import time; print('worker up', flush=True); time.sleep(600)"],
        **kwargs,
    )


async def wait_for_phase(
    backend: SlurmBackend,
    state: dict,
    phase: Phase,
    *,
    reason_given: bool = False,
    within: float = 120,
) -> ProcessStatus:
    """Poll until the process is in ``phase`` (and, with ``reason_given``, Slurm has
    said why it waits: right after submission the queue reason is still None)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        [status] = await backend.poll([state])
        if status.phase is phase and (not reason_given or status.reason != "queued"):
            return status
        if loop.time() > deadline:
            raise AssertionError(f"still {status} after {within} s, expected {phase}")
        await asyncio.sleep(0.5)


async def wait_for_output(backend: SlurmBackend, state: dict, text: str, within: float = 120):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        log = await backend.read_log(state, 20)
        if log and text in log:
            return log
        if loop.time() > deadline:
            raise AssertionError(f"{text!r} not in the job output after {within} s: {log!r}")
        await asyncio.sleep(0.5)


async def test_job_runs_as_the_user_and_stop_empties_the_queue(make_backend, slurm):
    backend = make_backend()
    state = await backend.start(sleeper("w-basic", env={"GREETING": 'it\'s a "test" $HOME'}))
    assert set(state) >= {"job_id", "staging_dir", "output"}
    job_id = state["job_id"]

    await wait_for_phase(backend, state, Phase.RUNNING)
    assert f"{job_id} {USER} hubgate-c1-w-basic" in slurm.queue("%i %u %j")

    # The staging folder and the credentials belong to the user, readable only by them.
    staging = Path(state["staging_dir"])
    assert staging == Path(f"/home/{USER}/.hubgate/c1/w-basic")
    token = staging / "token"
    assert owner_and_mode(staging) == (_uid(USER), 0o700)
    assert owner_and_mode(token) == (_uid(USER), 0o600)

    log = await wait_for_output(backend, state, "worker up")
    assert "worker up" in log

    await backend.stop(state)
    assert not [line for line in slurm.queue() if line.strip() == job_id]
    assert not token.exists(), "stop removes the credentials"
    # Idempotent: stopping a job that is gone is fine.
    await backend.stop(state)


def owner_and_mode(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_mode & 0o777


def _uid(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


async def test_environment_and_argv_reach_the_process_quoted(make_backend, slurm, monkeypatch):
    # The service's own secrets must not leak into jobs through the submit environment.
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-secret")
    backend = make_backend(read_log_as_user=True)
    tricky = 'it\'s a "test" with $HOME, `backticks` and\nnewlines; rm -rf /'
    spec = ProcessSpec(
        cluster_name="c1",
        role="worker",
        name="w-env",
        username=USER,
        argv=[
            sys.executable,
            "-c",
            "import json, os, sys; e = os.environ; print(json.dumps([e['TRICKY'],"
            " sys.argv[1:], e['HUBGATE_CREDENTIALS_DIR'], os.getcwd(),"
            " e['HUBGATE_LISTEN_HOST'], e['HUBGATE_ADVERTISE_HOST'],"
            " 'JUPYTERHUB_API_TOKEN' in e]), flush=True)",
            "arg with spaces",
            "$(id)",
        ],
        env={"TRICKY": tricky},
        memory=200 * 2**20,
    )
    state = await backend.start(spec)
    status = await wait_for_phase(backend, state, Phase.GONE)
    assert status.exit_code == 0, status
    log = await backend.read_log(state)
    assert log is not None
    seen = json.loads(log.strip().splitlines()[-1])
    assert seen == [
        tricky,
        ["arg with spaces", "$(id)"],
        state["staging_dir"],
        f"/home/{USER}",
        "0.0.0.0",
        slurm.node,
        False,
    ]


async def test_poll_from_a_fresh_backend_uses_stored_state_only(make_backend):
    first = make_backend()
    state = await first.start(sleeper("w-restart"))
    await wait_for_phase(first, state, Phase.RUNNING)

    stored = json.loads(json.dumps(state))  # what the service's database keeps
    restarted = make_backend()
    [status] = await restarted.poll([stored])
    assert status.phase is Phase.RUNNING
    assert "worker up" in await wait_for_output(restarted, stored, "worker up")
    await restarted.stop(stored)
    [status] = await restarted.poll([stored])
    assert status.phase is Phase.GONE


async def test_cancelled_behind_the_backends_back_is_gone_with_a_reason(make_backend, slurm):
    backend = make_backend()
    state = await backend.start(sleeper("w-cancelled"))
    await wait_for_phase(backend, state, Phase.RUNNING)
    slurm.run("scancel", state["job_id"])
    status = await wait_for_phase(backend, state, Phase.GONE)
    assert f"Slurm job {state['job_id']} ended (CANCELLED" in status.reason
    assert "killed by signal" in status.reason


async def test_failing_setup_is_gone_with_its_output(make_backend):
    backend = make_backend()
    spec = sleeper(
        "w-badsetup",
        setup="echo 'activating /home/hgalice/env: no such environment'\nexit 3",
    )
    state = await backend.start(spec)
    status = await wait_for_phase(backend, state, Phase.GONE)
    assert status.exit_code == 3
    assert "with exit code 3" in status.reason
    # the service puts the output's last lines into the user's reason
    output = await backend.read_log(state, 10)
    assert "activating /home/hgalice/env: no such environment" in output
    assert "worker up" not in output


async def test_setup_runs_before_the_process_in_the_same_shell(make_backend):
    backend = make_backend()
    spec = ProcessSpec(
        cluster_name="c1",
        role="worker",
        name="w-setup",
        username=USER,
        argv=[sys.executable, "-c", "import os; print('setup said', os.environ['FROM_SETUP'])"],
        setup='cd /tmp\nexport FROM_SETUP="$(pwd)"',
        memory=200 * 2**20,
    )
    state = await backend.start(spec)
    status = await wait_for_phase(backend, state, Phase.GONE)
    assert status.exit_code == 0, status.reason
    assert "setup said /tmp" in (await backend.read_log(state) or "")


async def test_job_that_cannot_run_now_is_pending_with_the_queue_reason(make_backend, slurm):
    backend = make_backend()
    # Take the node's cores with one job, then ask for them again.
    first = await backend.start(sleeper("w-big-1", cores=slurm.cpus))
    await wait_for_phase(backend, first, Phase.RUNNING)
    second = await backend.start(sleeper("w-big-2", cores=slurm.cpus))
    status = await wait_for_phase(backend, second, Phase.PENDING, reason_given=True)
    # Slurm says Resources (or Priority for a job behind another) while the node is busy.
    assert status.reason in ("queued: Resources", "queued: Priority"), status
    await backend.stop(second)
    await backend.stop(first)
    assert not {first["job_id"], second["job_id"]} & {ln.strip() for ln in slurm.queue()}


async def test_drained_node_keeps_the_job_pending(make_backend, slurm):
    backend = make_backend()
    slurm.run("scontrol", "update", f"NodeName={slurm.node}", "State=DRAIN", "Reason=hubgate-test")
    try:
        state = await backend.start(sleeper("w-drained"))
        status = await wait_for_phase(backend, state, Phase.PENDING, reason_given=True)
        assert status.reason.startswith("queued: "), status
    finally:
        slurm.run("scontrol", "update", f"NodeName={slurm.node}", "State=RESUME")
    await wait_for_phase(backend, state, Phase.RUNNING)
    await backend.stop(state)


async def test_impossible_request_is_a_backend_error_naming_the_command(make_backend, slurm):
    backend = make_backend()
    with pytest.raises(BackendError) as info:
        await backend.start(sleeper("w-huge", memory=10**15))
    message = str(info.value)
    assert "sbatch --parsable" in message
    assert "runuser -u hgalice" in message
    assert "sbatch: error" in message


async def test_bad_values_are_refused_before_anything_is_submitted(make_backend, slurm):
    backend = make_backend()
    with pytest.raises(BackendError, match="partition 'debug --uid=0' is not allowed|queue"):
        await backend.start(sleeper("w-bad", resources={"partition": "debug --uid=0"}))
    with pytest.raises(BackendError, match="extra directive"):
        await backend.start(sleeper("w-bad", resources={"directives": ["x\n#SBATCH --uid=0"]}))
    with pytest.raises(BackendError, match="walltime"):
        await backend.start(sleeper("w-bad", resources={"walltime": "soon"}))
    with pytest.raises(BackendError, match="no system account 'nosuchuser'"):
        await backend.start(
            ProcessSpec(
                cluster_name="c1", role="worker", name="w", username="nosuchuser", argv=["true"]
            )
        )
    assert not [ln for ln in slurm.queue("%j") if "w-bad" in ln]


async def test_walltime_and_partition_reach_slurm(make_backend, slurm):
    backend = make_backend(walltime="1-02:03:00")
    state = await backend.start(sleeper("w-limits", resources={"partition": "debug"}))
    lines = [ln.split() for ln in slurm.queue("%i %l %P %C %m")]
    assert [state["job_id"], "1-02:03:00", "debug", "1", "200M"] in lines
    await backend.stop(state)


async def test_output_symlinked_by_the_user_is_not_read_as_root(make_backend):
    backend = make_backend()
    state = await backend.start(sleeper("w-symlink"))
    await wait_for_phase(backend, state, Phase.RUNNING)
    await backend.stop(state)
    # The user swaps their output file for a link to a file only root may read.
    link = [
        "runuser", "-u", USER, "--", "ln", "-sf", "/etc/shadow", state["output"]
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*link, cwd="/")
    assert await proc.wait() == 0
    with pytest.raises(BackendError, match="Permission denied"):
        await backend.read_log(state)
