"""LocalBackend, the cluster process runtime and the scheduler agent, with real
schedulers, workers, TLS and a websocket endpoint."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from hubgate.spawners.base import Phase, ProcessSpec
from hubgate.spawners.local import LocalBackend, is_running

from .conftest import AgentEndpoint, Cluster, processes_of, wait_for

GiB = 2**30


async def _start_scheduler(tracker, cluster: Cluster, endpoint: AgentEndpoint):
    state = await tracker.start(cluster.scheduler_spec())
    hello = await endpoint.wait_message(cluster.name, "hello")
    return state, hello


@pytest.mark.slow
async def test_cluster_end_to_end(
    make_backend, cluster: Cluster, agent_endpoint: AgentEndpoint, launch_mode, tmp_path
):
    from dask import array as da
    from distributed import Client

    tracker = await make_backend(fork=launch_mode == "fork")
    backend: LocalBackend = tracker.backend

    scheduler, hello = await _start_scheduler(tracker, cluster, agent_endpoint)
    assert set(scheduler) == {"pid", "start_ticks", "uid", "log", "workdir", "exit_file"}
    workdir = scheduler["workdir"]
    assert os.stat(workdir).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(workdir, "scheduler.key")).st_mode & 0o777 == 0o600
    assert hello["cluster"] == cluster.name
    assert hello["scheduler_address"].startswith("tls://127.0.0.1:")
    assert hello["dashboard_address"].startswith("http://127.0.0.1:")
    assert hello["workers"] == []
    assert {"python", "dask", "distributed", "cloudpickle", "msgpack", "hubgate"} <= set(
        hello["versions"]
    )
    # The dashboard answers under the service's public path.
    response = await AsyncHTTPClient().fetch(
        hello["dashboard_address"] + cluster.dashboard_prefix + "/health"
    )
    assert response.body == b"ok"

    address = hello["scheduler_address"]
    w1 = await tracker.start(cluster.worker_spec("w-1", address, threads=1, memory=GiB))
    w2 = await tracker.start(cluster.worker_spec("w-2", address, threads=2, memory=2 * GiB))
    added1 = await agent_endpoint.wait_message(cluster.name, "worker_added", name="w-1")
    added2 = await agent_endpoint.wait_message(cluster.name, "worker_added", name="w-2")
    assert (added1["nthreads"], added1["memory_limit"]) == (1, GiB)
    assert (added2["nthreads"], added2["memory_limit"]) == (2, 2 * GiB)
    assert added1["address"].startswith("tls://127.0.0.1:")
    statuses = await backend.poll([scheduler, w1, w2])
    assert [s.phase for s in statuses] == [Phase.RUNNING] * 3
    assert len(processes_of(cluster.name, [scheduler, w1, w2])) >= 3

    async with Client(
        address, security=cluster.client_security(tmp_path), asynchronous=True
    ) as client:
        total = await client.compute(da.ones((4000, 4000), chunks=500).sum())
        assert total == 16_000_000
        # Workers' HTTP servers, reachable by any local account, serve nothing.
        ports = await client.run(lambda dask_worker: dask_worker.http_server.port)
        for port in ports.values():
            for path in ("/metrics", "/health"):
                with pytest.raises(HTTPClientError) as refused:
                    await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}{path}")
                assert refused.value.code == 404
        # Once the work is done the agent reports an idle cluster.
        activity = await agent_endpoint.wait_message(cluster.name, "activity", processing=0)
        assert isinstance(activity["adaptive_target"], int)
        assert isinstance(activity["idle_since"], float)

        await agent_endpoint.send(cluster.name, {"op": "retire_workers", "names": ["w-1"]})
        removed = await agent_endpoint.wait_message(cluster.name, "worker_removed", name="w-1")
        assert removed["expected"] is True
        # A retired worker exits normally.
        await wait_for(lambda: not is_running(w1["pid"], w1["start_ticks"]), what="w-1 exit")
        [status] = await backend.poll([w1])
        assert status.phase is Phase.GONE
        assert status.exit_code == 0, status.reason
        assert list((await client.nthreads()).values()) == [2]  # only w-2 is left

    log = await backend.read_log(scheduler, max_lines=200)
    assert log and "Scheduler at" in log

    for state in (w2, scheduler, w1):
        await backend.stop(state)
    assert processes_of(cluster.name, [scheduler, w1, w2]) == []
    assert [s.phase for s in await backend.poll([scheduler, w1, w2])] == [Phase.GONE] * 3
    assert not await asyncio.to_thread(os.path.exists, workdir)  # credentials removed
    assert await backend.read_log(scheduler) is not None  # the log is kept
    await backend.stop(scheduler)  # idempotent


async def _on_new_scheduler(
    tracker, cluster: Cluster, endpoint: AgentEndpoint, tmp_path, function, **kw
):
    """Start the cluster's scheduler, run ``function(dask_scheduler)`` in it through a
    client, stop it; the scheduler's state and the function's result."""
    from distributed import Client

    state = await tracker.start(cluster.scheduler_spec(**kw))
    hello = await endpoint.wait_message(cluster.name, "hello")
    async with Client(
        hello["scheduler_address"], security=cluster.client_security(tmp_path), asynchronous=True
    ) as client:
        result = await client.run_on_scheduler(function)
    await tracker.backend.stop(state)
    return state, result


# lambdas, which travel to the scheduler by value (this module is not importable there)
def _tick_ms():
    return lambda dask_scheduler: dask_scheduler.periodic_callbacks["tick"].callback_time


def _scratch():
    return lambda dask_scheduler: dask_scheduler.local_directory


@pytest.mark.slow
async def test_idle_scheduler_ticks_once_a_second_unless_configured(
    make_backend, agent_endpoint: AgentEndpoint, launch_mode, tmp_path
):
    """distributed's 20 ms loop-health tick is most of an idle scheduler's CPU: hubgate's
    schedulers tick once a second, unless the cluster's environment says otherwise."""
    tracker = await make_backend(fork=launch_mode == "fork")
    default = Cluster("t" + os.urandom(4).hex(), agent_endpoint)
    _, tick = await _on_new_scheduler(tracker, default, agent_endpoint, tmp_path, _tick_ms())
    assert tick == 1000
    chosen = Cluster("t" + os.urandom(4).hex(), agent_endpoint)
    spec_env = {"DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "50ms"}
    _, tick = await _on_new_scheduler(
        tracker, chosen, agent_endpoint, tmp_path, _tick_ms(), env=spec_env
    )
    assert tick == 50


@pytest.mark.slow
async def test_scheduler_scratch_space_is_its_own_folder_unless_configured(
    make_backend, agent_endpoint: AgentEndpoint, launch_mode, tmp_path
):
    """distributed's scratch space is shared by all of an account's schedulers by
    default (<tmp>/dask-scratch-space), and each one starting lists and tries to lock
    every other's folder there: a scheduler's is in its own folder instead. The
    cluster's environment may still name another."""
    tracker = await make_backend(fork=launch_mode == "fork")
    default = Cluster("t" + os.urandom(4).hex(), agent_endpoint)
    state, scratch = await _on_new_scheduler(tracker, default, agent_endpoint, tmp_path, _scratch())
    assert scratch.startswith(state["workdir"] + os.sep)
    chosen = Cluster("t" + os.urandom(4).hex(), agent_endpoint)
    # where the scheduler's uid can write (tmp_path's parents are the test's own)
    with tempfile.TemporaryDirectory(prefix="hubgate-scratch-") as mine:
        os.chmod(mine, 0o777)
        env = {"DASK_TEMPORARY_DIRECTORY": mine}
        _, scratch = await _on_new_scheduler(
            tracker, chosen, agent_endpoint, tmp_path, _scratch(), env=env
        )
        assert scratch.startswith(mine + os.sep)


@pytest.mark.slow
async def test_killed_worker_is_gone_with_reason(
    make_backend, cluster: Cluster, agent_endpoint: AgentEndpoint, launch_mode
):
    tracker = await make_backend(fork=launch_mode == "fork")
    _, hello = await _start_scheduler(tracker, cluster, agent_endpoint)
    worker = await tracker.start(
        cluster.worker_spec("w-k", hello["scheduler_address"], threads=1, memory=GiB)
    )
    await agent_endpoint.wait_message(cluster.name, "worker_added", name="w-k")

    os.kill(worker["pid"], signal.SIGKILL)

    removed = await agent_endpoint.wait_message(cluster.name, "worker_removed", name="w-k")
    assert removed["expected"] is False
    status = await wait_for(
        lambda: _gone(tracker.backend, worker), what="the killed worker to be gone"
    )
    assert "killed by signal 9" in status.reason
    assert status.exit_code == -9


@pytest.mark.slow
async def test_listen_on_all_interfaces_advertise_one(
    make_backend, cluster: Cluster, agent_endpoint: AgentEndpoint, tmp_path
):
    """Bound to 0.0.0.0 (a batch or pod backend), the processes advertise
    HUBGATE_ADVERTISE_HOST, and that address works."""
    tracker = await make_backend(fork=True)
    hosts = {"HUBGATE_LISTEN_HOST": "0.0.0.0", "HUBGATE_ADVERTISE_HOST": "127.0.0.1"}
    spec = cluster.scheduler_spec()
    await tracker.start(dataclasses.replace(spec, env={**spec.env, **hosts}))
    hello = await agent_endpoint.wait_message(cluster.name, "hello")
    assert hello["scheduler_address"].startswith("tls://127.0.0.1:")
    assert hello["dashboard_address"].startswith("http://127.0.0.1:")
    await tracker.start(
        cluster.worker_spec("w-a", hello["scheduler_address"], threads=1, memory=GiB, env=hosts)
    )
    added = await agent_endpoint.wait_message(cluster.name, "worker_added", name="w-a")
    assert added["address"].startswith("tls://127.0.0.1:")

    from distributed import Client

    async with Client(
        hello["scheduler_address"], security=cluster.client_security(tmp_path), asynchronous=True
    ) as client:
        assert await client.submit(sum, [1, 2, 3]) == 6


@pytest.mark.slow
async def test_nanny_worker_leaves_nothing_behind(
    make_backend, cluster: Cluster, agent_endpoint: AgentEndpoint
):
    """With HUBGATE_WORKER_NANNY=1 the worker is a nanny's child process: stopping the
    nanny's process stops both."""
    tracker = await make_backend(fork=True)
    scheduler, hello = await _start_scheduler(tracker, cluster, agent_endpoint)
    spec = cluster.worker_spec(
        "w-n",
        hello["scheduler_address"],
        threads=2,
        memory=GiB,
        env={"HUBGATE_WORKER_NANNY": "1"},
    )
    worker = await tracker.start(spec)
    added = await agent_endpoint.wait_message(cluster.name, "worker_added", name="w-n")
    assert (added["nthreads"], added["memory_limit"]) == (2, GiB)
    states = [scheduler, worker]
    assert len(processes_of(cluster.name, states)) >= 3  # scheduler, nanny, its worker

    await tracker.backend.stop(worker)
    await tracker.backend.stop(scheduler)
    assert processes_of(cluster.name, states) == []


async def _gone(backend, state):
    [status] = await backend.poll([state])
    return status if status.phase is Phase.GONE else None


@pytest.mark.parametrize(
    "setup, expected",
    [
        (
            "echo 'conda: environment /opt/envs/missing not found' >&2; exit 1",
            "exited with code 1: conda: environment /opt/envs/missing not found",
        ),
        # A last command that fails stops the start too, with a line that says so.
        (
            "source /opt/envs/missing/bin/activate",
            "exited with code 1: hubgate: the setup script failed with exit code 1",
        ),
    ],
)
async def test_setup_failure_reports_its_output(
    make_backend, cluster: Cluster, setup: str, expected: str
):
    tracker = await make_backend(fork=True)
    spec = cluster.worker_spec("w-s", "tls://127.0.0.1:1", threads=1, memory=GiB, setup=setup)
    state = await tracker.start(spec)
    status = await wait_for(lambda: _gone(tracker.backend, state), what="setup failure")
    assert status.exit_code == 1
    assert status.reason == expected
    assert "/opt/envs/missing" in await tracker.backend.read_log(state)


async def test_setup_runs_before_the_process(make_backend, cluster: Cluster, work_dir: str):
    """The setup shares the process's shell (its exports reach it), both run as the
    user's account, and argv is passed as arguments, never pasted into the script."""
    tracker = await make_backend(fork=True)
    # relative: the process starts in its cluster's folder, which its account owns
    marker = "it ran; $(touch hacked)"
    spec = ProcessSpec(
        cluster_name=cluster.name,
        role="worker",
        name="w-shell",
        username="test",
        argv=[
            sys.executable,
            "-c",
            "import os,sys; open(sys.argv[1],'w').write(os.environ['X'] + ' ' + sys.argv[2])",
            marker,
        ],
        setup='export X="from-setup as $(id -u):$(id -g):$(id -G)"; set -- "$@" "$HOME"',
    )
    state = await tracker.start(spec)
    status = await wait_for(lambda: _gone(tracker.backend, state), what="the command to end")
    assert status.exit_code == 0, status.reason
    cluster_dir = Path(work_dir) / cluster.name
    uid = state["uid"]
    assert uid >= 1000
    assert (cluster_dir / marker).read_text() == f"from-setup as {uid}:{uid}:{uid} {cluster_dir}"
    assert not (cluster_dir / "hacked").exists()


async def test_bad_configuration_is_one_readable_line(make_backend, cluster: Cluster):
    tracker = await make_backend(fork=True)
    spec = cluster.worker_spec("w-bad", "tls://127.0.0.1:1", threads=1, memory=GiB)
    env = {k: v for k, v in spec.env.items() if k != "HUBGATE_WORKER_THREADS"}
    state = await tracker.start(dataclasses.replace(spec, env=env))
    status = await wait_for(lambda: _gone(tracker.backend, state), what="config failure")
    assert status.exit_code == 2
    assert "HUBGATE_WORKER_THREADS is not set" in status.reason
    log = await tracker.backend.read_log(state)
    assert log.splitlines()[-1] == (
        "hubgate: HUBGATE_WORKER_THREADS is not set: the backend must set it for a worker"
    )
    assert "Traceback" not in log


@pytest.mark.slow
async def test_unreachable_scheduler_fails_with_reason(make_backend, cluster: Cluster):
    tracker = await make_backend(fork=False)
    spec = cluster.worker_spec(
        "w-u",
        "tls://127.0.0.1:1",
        threads=1,
        memory=GiB,
        env={"HUBGATE_WORKER_CONNECT_TIMEOUT": "2"},
    )
    state = await tracker.start(spec)
    status = await wait_for(lambda: _gone(tracker.backend, state), what="start failure")
    assert status.exit_code == 3
    assert "the worker failed to start" in status.reason


@pytest.mark.slow
async def test_restarted_service_finds_running_processes(
    make_backend, cluster: Cluster, agent_endpoint: AgentEndpoint, launch_mode
):
    first = await make_backend(fork=launch_mode == "fork")
    scheduler, _ = await _start_scheduler(first, cluster, agent_endpoint)
    await first.backend.cleanup()  # the service stops; its fork server goes

    restarted = await make_backend(fork=launch_mode == "fork")
    [status] = await restarted.backend.poll([scheduler])
    assert status.phase is Phase.RUNNING
    assert "Scheduler at" in (await restarted.backend.read_log(scheduler, 100) or "")

    await restarted.backend.stop(scheduler)
    [status] = await restarted.backend.poll([scheduler])
    assert status.phase is Phase.GONE
    assert status.exit_code == 0, status.reason
    assert processes_of(cluster.name, [scheduler]) == []


@pytest.mark.slow
async def test_agent_reconnects_and_says_hello_again(
    make_backend, cluster: Cluster, agent_endpoint: AgentEndpoint
):
    tracker = await make_backend(fork=True)
    scheduler, hello = await _start_scheduler(tracker, cluster, agent_endpoint)
    worker = await tracker.start(
        cluster.worker_spec("w-r", hello["scheduler_address"], threads=1, memory=GiB)
    )
    await agent_endpoint.wait_message(cluster.name, "worker_added", name="w-r")

    await agent_endpoint.stop()  # the service restarts
    agent_endpoint.messages.clear()
    agent_endpoint.start()

    again = await agent_endpoint.wait_message(cluster.name, "hello")
    assert again["scheduler_address"] == hello["scheduler_address"]
    assert [w["name"] for w in again["workers"]] == ["w-r"]

    # And the new connection carries orders.
    await agent_endpoint.send(cluster.name, {"op": "close"})
    await wait_for(
        lambda: not is_running(scheduler["pid"], scheduler["start_ticks"]),
        what="the scheduler to close",
    )
    [status] = await tracker.backend.poll([scheduler])
    assert status.exit_code == 0, status.reason
    await tracker.backend.stop(worker)
    assert processes_of(cluster.name, [scheduler, worker]) == []


@pytest.mark.slow
async def test_agent_token_is_checked(
    make_backend, cluster: Cluster, agent_endpoint: AgentEndpoint
):
    """The scheduler's agent sends its token: with a wrong one it is refused and keeps
    trying (the endpoint counts the refusals)."""
    agent_endpoint.tokens[cluster.name] = "not-the-token"
    tracker = await make_backend(fork=True)
    scheduler = await tracker.start(cluster.scheduler_spec())
    await wait_for(lambda: agent_endpoint.rejected >= 2, what="refused connections")
    assert agent_endpoint.of(cluster.name, "hello") == []
    agent_endpoint.tokens[cluster.name] = cluster.token
    await agent_endpoint.wait_message(cluster.name, "hello")
    await tracker.backend.stop(scheduler)


async def test_bad_python_environment_is_a_backend_error(make_backend, cluster: Cluster):
    from hubgate.spawners.base import BackendError

    tracker = await make_backend(fork=False)
    spec = cluster.scheduler_spec(resources={"python": "/nonexistent/env"})
    with pytest.raises(BackendError, match="does not exist"):
        await tracker.start(spec)


async def test_fork_server_starts_no_threads(work_dir):
    """The server is single-threaded after its imports (forking is safe)."""
    from hubgate.spawners.forkserver import ForkServerClient

    client = ForkServerClient(sys.executable, os.path.join(work_dir, "fs.log"))
    await client.start()
    try:
        reply = await client.request({"op": "ping"})
        tasks = os.listdir(f"/proc/{reply['pid']}/task")
        assert len(tasks) == 1
    finally:
        await client.close()
    assert not client.alive


async def test_fork_server_answers_hundreds_of_requests_at_once(work_dir):
    """Clusters created together ask the fork server together: every request is
    answered (one reset by a full listen backlog made its child an exec'd process,
    ~0.8 s of CPU instead of ~20 ms)."""
    from hubgate.spawners.forkserver import LISTEN_BACKLOG, ForkServerClient

    client = ForkServerClient(sys.executable, os.path.join(work_dir, "fs.log"))
    await client.start()
    try:
        many = 3 * LISTEN_BACKLOG
        replies = await asyncio.gather(
            *(client.request({"op": "ping"}) for _ in range(many)), return_exceptions=True
        )
        failed = [r for r in replies if isinstance(r, BaseException)]
        assert failed == []
        assert len(replies) == many
    finally:
        await client.close()


async def test_requests_to_a_stuck_fork_server_end_in_errors(work_dir, monkeypatch):
    """A fork server that stops answering fails every request (the backend then execs
    the process), those waiting for their turn included: none waits forever."""
    from hubgate.spawners import forkserver

    monkeypatch.setattr(forkserver, "ANSWER_TIMEOUT", 0.5)
    client = forkserver.ForkServerClient(sys.executable, os.path.join(work_dir, "fs.log"))
    await client.start()
    pid = (await client.request({"op": "ping"}))["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        many = forkserver.MAX_IN_FLIGHT + 8
        replies = await asyncio.wait_for(
            asyncio.gather(
                *(client.request({"op": "ping"}) for _ in range(many)), return_exceptions=True
            ),
            60,  # a hang, not a timing: each request gives up after 0.5 s of waiting
        )
        assert all(isinstance(r, forkserver.ForkServerError) for r in replies), replies
    finally:
        os.kill(pid, signal.SIGCONT)
        await client.close()


# The modules a child of the fork server starts with.
FORK_SERVER_MODULES = (
    "import json, sys\n"
    "from hubgate.spawners.forkserver import preload\n"
    "preload()\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)


@pytest.mark.slow
async def test_forked_scheduler_imports_nothing_the_fork_server_did_not(
    make_backend, cluster: Cluster, agent_endpoint: AgentEndpoint, tmp_path
):
    """Whatever a scheduler imports as it starts, every forked scheduler pays for again
    (a module's import is ~1 ms of CPU, 200 schedulers at once are CPU-bound): the fork
    server imports it once, before it forks."""
    from distributed import Client

    tracker = await make_backend(fork=True)
    scheduler, hello = await _start_scheduler(tracker, cluster, agent_endpoint)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FORK_SERVER_MODULES, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    preloaded = set(json.loads(out))
    async with Client(
        hello["scheduler_address"], security=cluster.client_security(tmp_path), asynchronous=True
    ) as client:
        loaded = await client.run_on_scheduler(lambda: sorted(__import__("sys").modules))
    assert sorted(set(loaded) - preloaded) == []
    await tracker.backend.stop(scheduler)


@pytest.mark.slow
async def test_started_processes_tune_their_garbage_collector(
    make_backend, cluster: Cluster, agent_endpoint: AgentEndpoint, launch_mode, tmp_path
):
    """A scheduler's and a worker's modules and start-up objects are exempt from the
    cyclic garbage collector (gc.freeze): a full collection would otherwise walk them
    all, tens of milliseconds in the middle of some task's round trip. And it runs a
    third as often as Python's default, as under distributed's own CLI."""
    import gc

    from distributed import Client

    tracker = await make_backend(fork=launch_mode == "fork")
    scheduler, hello = await _start_scheduler(tracker, cluster, agent_endpoint)
    address = hello["scheduler_address"]
    worker = await tracker.start(cluster.worker_spec("w-1", address, threads=1, memory=GiB))
    async with Client(
        address, security=cluster.client_security(tmp_path), asynchronous=True
    ) as client:
        await client.wait_for_workers(1)
        # a lambda travels by value (the cluster cannot import this test module)
        gc_state = lambda: (gc.get_freeze_count(), gc.get_threshold())  # noqa: E731
        on_scheduler = await client.run_on_scheduler(gc_state)
        [on_worker] = (await client.run(gc_state)).values()
    default = gc.get_threshold()  # this test process keeps Python's
    for frozen, threshold in (on_scheduler, on_worker):
        # distributed's own modules alone are tens of thousands of tracked objects
        assert frozen > 10_000
        assert tuple(threshold) == tuple(3 * n for n in default)
    for state in (worker, scheduler):
        await tracker.backend.stop(state)
