"""hubgate end to end on a real Slurm: a real JupyterHub whose hubgate service runs every
scheduler and worker as a Slurm job of the system user ``hgalice`` (hub user alice),
driven by the official dask-gateway client and by hubgate's own in fresh processes, as a
JASMIN user on a login node would.

One hub for the module; every test stops its clusters and checks that no job of
hgalice is left in the queue.
"""

from __future__ import annotations

import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster

from hubgate.tooling.hubrunner import RunningHub
from tests.fixtures.hub import gateway_env, run_python, start_hub
from tests.fixtures.service_process import restart_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SYSTEM_USER = "hgalice"


def slurm_hub_config(slurm: SlurmCluster) -> str:
    return textwrap.dedent(
        f"""
        import os
        # JupyterHub passes a managed service only a few variables; the batch commands
        # need to find this Slurm.
        os.environ["SLURM_CONF"] = {str(slurm.conf)!r}
        c.HubgateService.backend_class = "slurm"
        c.SlurmBackend.system_username = "hg{{username}}"
        c.SlurmBackend.partition = "debug"
        c.SlurmBackend.scheduler_on_service_host = False
        c.SlurmBackend.staging_python = {sys.executable!r}
        c.SlurmBackend.stop_timeout = 120
        # Jobs wait for slurmd and a loaded machine; nothing here measures speed.
        c.HubgateService.cluster_start_timeout = 300
        c.HubgateService.worker_start_timeout = 300
        """
    )


@pytest.fixture(scope="module")
def shared_cores(slurm: SlurmCluster) -> Iterator[None]:
    """The test node has 2 CPUs; a scheduler and two workers need 3 cores. Let jobs
    share cores for this module (a runtime partition setting, undone afterwards)."""
    slurm.run("scontrol", "update", "PartitionName=debug", "OverSubscribe=FORCE:4")
    yield
    slurm.run("scontrol", "update", "PartitionName=debug", "OverSubscribe=NO", check=False)


@pytest.fixture(scope="module")
def slurm_hub(
    slurm: SlurmCluster,
    slurm_user: object,
    shared_cores: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningHub]:
    hub = start_hub(
        tmp_path_factory.mktemp("slurmhub"), hubgate_config_extra=slurm_hub_config(slurm)
    )
    try:
        yield hub
    finally:
        hub.stop()
        # Whatever a failed test left: the service does not stop clusters on shutdown.
        slurm.run("scancel", "-u", SYSTEM_USER, check=False)


# -- helpers ----------------------------------------------------------------------------


def wait_until(check: Callable[[], object], what: str, timeout: float = 300) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)


def jobs_of(slurm: SlurmCluster, cluster: str | None = None) -> dict[str, tuple[str, str, str]]:
    """Jobs in squeue: id -> (user, state, process name), of one cluster or of all
    hubgate clusters. Job names are ``hubgate-<cluster>-<process>``."""
    prefix = f"hubgate-{cluster}-" if cluster else "hubgate-"
    jobs = {}
    for line in slurm.queue("%i %u %T %j"):
        job_id, user, state, name = line.split()
        if name.startswith(prefix):
            jobs[job_id] = (user, state, name.removeprefix(prefix))
    return jobs


def user_jobs(slurm: SlurmCluster) -> list[str]:
    return slurm.run("squeue", "-h", "-u", SYSTEM_USER, "-o", "%i %j %T").stdout.splitlines()


def running_jobs(slurm: SlurmCluster, cluster: str, count: int) -> dict[str, tuple]:
    """Wait until exactly ``count`` jobs of the cluster are in squeue, all RUNNING."""

    def check() -> dict[str, tuple] | None:
        jobs = jobs_of(slurm, cluster)
        if len(jobs) == count and all(state == "RUNNING" for _, state, _ in jobs.values()):
            return jobs
        return None

    found = wait_until(check, f"{count} RUNNING jobs of {cluster}: {jobs_of(slurm, cluster)}")
    assert isinstance(found, dict)
    return found


def run_client(hub: RunningHub, code: str, cwd: Path, timeout: float = 600) -> str:
    """User code in a fresh Python process with alice's token, as on a login node."""
    return run_python(code, gateway_env(hub, "alice"), cwd, timeout)


def value(out: str, key: str) -> str:
    return next(line.split(None, 1)[1] for line in out.splitlines() if line.startswith(key + " "))


# Code run at the top of every client process (official client unless told otherwise).
PRELUDE = """
import time
import dask.array as da
from {client} import Gateway

gateway = Gateway()

def workers(client):
    return len(client.nthreads())

def wait_workers(client, n, timeout=300):
    deadline = time.time() + timeout
    while workers(client) != n:
        assert time.time() < deadline, f"{{workers(client)}} workers, not {{n}}"
        time.sleep(0.5)

def compute(client):
    total = client.compute(da.ones((4000, 4000), chunks=500).sum()).result(timeout=300)
    assert total == 16_000_000, total
"""


def client_code(body: str, client: str = "dask_gateway") -> str:
    return PRELUDE.format(client=client) + textwrap.dedent(body)


# -- tests ------------------------------------------------------------------------------


def test_cluster_lifecycle_as_slurm_jobs(
    slurm_hub: RunningHub, slurm: SlurmCluster, tmp_path: Path
) -> None:
    """The JASMIN user's session with the official client: jobs under the user's
    account, a computation, scale, adapt, reconnect from new processes, a service restart,
    a worker job cancelled behind the service's back, shutdown."""
    out = run_client(
        slurm_hub,
        client_code(
            """
            cluster = gateway.new_cluster(shutdown_on_close=False)
            print("NAME", cluster.name, flush=True)
            cluster.scale(1)
            client = cluster.get_client()
            client.wait_for_workers(1, timeout=300)
            compute(client)
            client.close()
            cluster.close()
            """
        ),
        tmp_path,
    )
    name = value(out, "NAME")
    try:
        # scheduler and worker are jobs of hgalice
        jobs = running_jobs(slurm, name, 2)
        assert {user for user, _, _ in jobs.values()} == {SYSTEM_USER}, jobs
        assert "scheduler" in {process for _, _, process in jobs.values()}, jobs

        # shutdown_on_close=False kept it; connect from a new process and scale to 2
        run_client(
            slurm_hub,
            client_code(
                f"""
                cluster = gateway.connect({name!r})
                cluster.scale(2)
                client = cluster.get_client()
                wait_workers(client, 2)
                compute(client)
                """
            ),
            tmp_path,
        )
        running_jobs(slurm, name, 3)

        # and back to 1: the retired worker's job leaves the queue
        run_client(
            slurm_hub,
            client_code(
                f"""
                cluster = gateway.connect({name!r})
                cluster.scale(1)
                client = cluster.get_client()
                wait_workers(client, 1)
                compute(client)
                """
            ),
            tmp_path,
        )
        running_jobs(slurm, name, 2)

        # adapt: a queue of slow tasks brings a second worker (a second job)
        run_client(
            slurm_hub,
            client_code(
                f"""
                cluster = gateway.connect({name!r})
                cluster.adapt(minimum=1, maximum=2)
                client = cluster.get_client()
                # 30 s of work for one worker thread: longer than a second job takes
                # to start on a loaded machine, so adapt wants 2 workers until it has
                futures = client.map(lambda i: time.sleep(1) or i, range(30), pure=False)
                wait_workers(client, 2)
                assert sum(client.gather(futures)) == sum(range(30))
                cluster.scale(1)
                wait_workers(client, 1)
                """
            ),
            tmp_path,
        )
        before_restart = running_jobs(slurm, name, 2)

        # a restart of the service in the middle: the cluster is found again from the
        # stored job ids, still RUNNING and computing, and no job is added or lost
        restart_service(slurm_hub)
        run_client(
            slurm_hub,
            client_code(
                f"""
                [report] = [c for c in gateway.list_clusters() if c.name == {name!r}]
                assert report.status.name == "RUNNING", report.status
                cluster = gateway.connect({name!r})
                client = cluster.get_client()
                wait_workers(client, 1)
                compute(client)
                """
            ),
            tmp_path,
        )
        assert running_jobs(slurm, name, 2) == before_restart

        # a worker job cancelled behind the service's back is noticed and replaced
        [killed] = [j for j, (_, _, p) in before_restart.items() if p != "scheduler"]
        slurm.run("scancel", killed)
        wait_until(
            lambda: killed not in jobs_of(slurm, name) and len(jobs_of(slurm, name)) == 2,
            "a new worker job in place of the cancelled one",
        )
        replaced = running_jobs(slurm, name, 2)
        assert killed not in replaced
        run_client(
            slurm_hub,
            client_code(
                f"""
                cluster = gateway.connect({name!r})
                client = cluster.get_client()
                wait_workers(client, 1)
                compute(client)
                cluster.shutdown()
                """
            ),
            tmp_path,
        )
        # shutdown leaves no job of hgalice
        wait_until(lambda: not user_jobs(slurm), f"an empty queue for {SYSTEM_USER}", 180)
    finally:
        stop_all(slurm_hub, tmp_path)


def test_hubgate_client_on_slurm(
    slurm_hub: RunningHub, slurm: SlurmCluster, tmp_path: Path
) -> None:
    out = run_client(
        slurm_hub,
        client_code(
            """
            with gateway.new_cluster() as cluster:
                print("NAME", cluster.name, flush=True)
                cluster.scale(1)
                client = cluster.get_client()
                client.wait_for_workers(1, timeout=300)
                compute(client)
                # direct connect: the client reached the scheduler on the job's node
                print("ADDRESS", cluster.scheduler_address, flush=True)
                assert client.scheduler.address == cluster.scheduler_address
                # scheduler and worker are RUNNING jobs of hgalice
                import subprocess
                queue = subprocess.run(
                    ["squeue", "-h", "-u", "hgalice", "-o", "%j %T"],
                    capture_output=True, text=True, check=True,
                ).stdout.split(chr(10))
                mine = sorted(line for line in queue if cluster.name in line)
                assert len(mine) == 2 and all(line.endswith(" RUNNING") for line in mine), mine
                assert mine[0].endswith("-scheduler RUNNING") or mine[1].endswith(
                    "-scheduler RUNNING"
                ), mine
                client.close()
            """,
            client="hubgate",
        ),
        tmp_path,
    )
    assert value(out, "NAME")
    # the scheduler's own address on the job's node (this machine), not the proxy's
    host, _, port = value(out, "ADDRESS").removeprefix("tls://").rpartition(":")
    assert host == socket.gethostname().split(".")[0] and port.isdigit(), out
    wait_until(lambda: not user_jobs(slurm), f"an empty queue for {SYSTEM_USER}", 180)


def test_failing_worker_setup_fails_the_cluster(
    slurm_hub: RunningHub, slurm: SlurmCluster, tmp_path: Path
) -> None:
    """Workers whose setup fails make the cluster FAILED, with their output in the
    reason; hubgate's client raises GatewayClusterError with it."""
    out = run_client(
        slurm_hub,
        client_code(
            """
            from hubgate import GatewayClusterError

            cluster = gateway.new_cluster(worker_setup="echo boom >&2; exit 3")
            name = cluster.name
            print("NAME", name, flush=True)
            cluster.scale(1)
            deadline = time.time() + 600
            while gateway.get_cluster(name).status.name != "FAILED":
                assert time.time() < deadline, gateway.get_cluster(name).status
                time.sleep(1)
            try:
                gateway.connect(name)
            except GatewayClusterError as exc:
                print("ERROR", str(exc).replace(chr(10), " | "), flush=True)
            else:
                raise AssertionError("connect to a FAILED cluster did not raise")
            """,
            client="hubgate",
        ),
        tmp_path,
    )
    error = value(out, "ERROR")
    assert "boom" in error, error
    assert value(out, "NAME") in error, error
    wait_until(lambda: not user_jobs(slurm), f"an empty queue for {SYSTEM_USER}", 180)


def stop_all(hub: RunningHub, cwd: Path) -> None:
    """Stop every cluster of alice's that is still pending or running (after a failure)."""
    run_client(
        hub,
        client_code(
            """
            for report in gateway.list_clusters():
                gateway.stop_cluster(report.name)
            """
        ),
        cwd,
    )
