"""Each user's processes run as that user (issue #10, item 1), through the real hub.

Bob's scheduler, workers and setup scripts run under a uid of his own (the demo's
uid-range mode): not root, not the service's, not alice's, the same after a restart of
the service. From there he finds none of the service's secrets in his environment and
can read neither the service's key, database and cookie secret, nor alice's cluster
files, nor the fork server's environment, and cannot signal alice's processes. A hub
user whose account would be a system account, the service's own or none gets a 403.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from dask_gateway import Gateway, GatewayCluster, JupyterHubAuth
from distributed import Client

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.service_api import ServiceApi, check_with_openapi
from tests.fixtures.hub import start_hub
from tests.fixtures.service_process import cmdline, restart_service, service_pid

pytestmark = pytest.mark.slow
# The probes below run in the clusters, which cannot import this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SECRET_WORDS = ("TOKEN", "SECRET", "KEY", "PASSWORD")


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def fork_server_pid(hub: RunningHub) -> int:
    service = service_pid(hub)
    pids = [
        p for p in _pids() if _ppid(p) == service and "hubgate.spawners.forkserver" in cmdline(p)
    ]
    assert len(pids) == 1, pids
    return pids[0]


def service_secrets(pid: int) -> dict[str, str]:
    """The service's environment variables that hold secrets (its hub token ...)."""
    env = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    pairs = dict(item.split("=", 1) for item in env if "=" in item)
    found = {k: v for k, v in pairs.items() if any(w in k for w in SECRET_WORDS) and v}
    assert "JUPYTERHUB_API_TOKEN" in found, sorted(pairs)
    return found


def processes_in(folder: Path) -> dict[int, str]:
    """Live processes whose working folder is ``folder`` (a cluster's), by name."""
    found = {}
    for pid in _pids():
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(folder):
                found[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
    return found


def gateway_for(hub: RunningHub, user: str) -> Gateway:
    return Gateway(
        hub.settings.gateway_address,
        proxy_address=hub.settings.proxy_address,
        auth=JupyterHubAuth(api_token=hub.tokens[user]),
    )


def probe(paths: dict[str, str], pids: dict[str, int]) -> dict[str, Any]:
    """Run in a scheduler or worker: who it is and what it can reach."""
    import os

    def attempt(action: Callable[[], object]) -> str:
        try:
            action()
        except PermissionError:
            return "PermissionError"
        except Exception as exc:
            return type(exc).__name__
        return "allowed"

    def read(path: str) -> None:
        with open(path, "rb") as f:
            f.read(1)

    with open("/proc/self/environ", "rb") as f:
        environ = f.read().decode(errors="replace")
    return {
        "ids": (os.getuid(), os.geteuid(), os.getgid(), os.getegid()),
        "groups": os.getgroups(),
        "home": os.environ.get("HOME"),
        "user": os.environ.get("USER"),
        "proc_environ": environ,
        "os_environ": "\0".join(f"{k}={v}" for k, v in os.environ.items()),
        "reads": {label: attempt(lambda p=path: read(p)) for label, path in paths.items()},
        "signals": {label: attempt(lambda p=pid: os.kill(p, 0)) for label, pid in pids.items()},
    }


def run_probes(
    cluster: GatewayCluster, paths: dict[str, str], pids: dict[str, int]
) -> list[dict[str, Any]]:
    """The probe's answers from the scheduler and from every worker."""
    client = cluster.get_client(set_as_default=False)
    try:
        client.wait_for_workers(1, timeout=120)
        answers = [client.run_on_scheduler(probe, paths, pids)]
        answers += list(client.run(probe, paths, pids).values())
    finally:
        client.close()
    return answers


def alice_and_bob_clusters(hub: RunningHub) -> Iterator[dict[str, GatewayCluster]]:
    """A running cluster with one worker for alice and one for bob (a fixture's body)."""
    made: dict[str, GatewayCluster] = {}
    gateways = {user: gateway_for(hub, user) for user in ("alice", "bob")}
    try:
        for user, gateway in gateways.items():
            made[user] = gateway.new_cluster(shutdown_on_close=False)
            made[user].scale(1)
        yield made
    finally:
        for user, cluster in made.items():
            gateways[user].stop_cluster(cluster.name)
            cluster.close()
        for gateway in gateways.values():
            gateway.close()


@pytest.fixture(scope="module")
def clusters(hub: RunningHub) -> Iterator[dict[str, GatewayCluster]]:
    yield from alice_and_bob_clusters(hub)


def test_each_users_processes_run_as_their_own_uid_and_reach_nothing_else(
    hub: RunningHub, clusters: dict[str, GatewayCluster]
) -> None:
    alices = hub.settings.cluster_work_dir / clusters["alice"].name
    bobs = hub.settings.cluster_work_dir / clusters["bob"].name
    data = hub.settings.work_dir / "service-data"
    alice_answers = run_probes(clusters["alice"], {}, {})
    alice_procs = processes_in(alices)
    alice_scheduler = next(p for p, name in alice_procs.items() if name.startswith("hubgate-sch"))
    service = service_pid(hub)
    paths = {
        "encryption key": str(data / "hubgate.key"),
        "database": str(data / "hubgate.sqlite"),
        "cookie secret": str(data / "cookie_secret"),
        "alice's TLS key": str(alices / "scheduler" / "scheduler.key"),
        "alice's token": str(alices / "scheduler" / "token"),
        "alice's log": str(alices / "scheduler.log"),
        "fork server's environment": f"/proc/{fork_server_pid(hub)}/environ",
        "service's environment": f"/proc/{service}/environ",
    }
    for path in paths.values():  # they exist: the refusals below are about permissions
        assert Path(path).exists(), path
    bob_answers = run_probes(clusters["bob"], paths, {"alice's scheduler": alice_scheduler})

    service_uid = os.stat(f"/proc/{service}").st_uid
    alice_uid = alice_answers[0]["ids"][0]
    secrets = service_secrets(service)
    assert len(bob_answers) == 2  # the scheduler and one worker
    for answer in bob_answers:
        uid = answer["ids"][0]
        assert answer["ids"] == (uid, uid, uid, uid), answer["ids"]
        assert uid not in (0, service_uid, alice_uid) and uid >= 1000, (uid, alice_uid)
        assert answer["groups"] in ([], [uid]), answer["groups"]
        assert (answer["home"], answer["user"]) == (str(bobs), "bob")
        for environ in (answer["proc_environ"], answer["os_environ"]):
            assert "JUPYTERHUB_API_TOKEN" not in environ
            for name, value in secrets.items():
                assert value not in environ, f"the service's {name} reached bob"
        assert answer["reads"] == dict.fromkeys(paths, "PermissionError"), answer["reads"]
        assert answer["signals"] == {"alice's scheduler": "PermissionError"}
    assert {a["ids"][0] for a in bob_answers} == {bob_answers[0]["ids"][0]}
    assert {a["ids"][0] for a in alice_answers} == {alice_uid} and alice_uid >= 1000

    # The service (root) still reads and signals what it runs: logs, and stop (below).
    assert alice_procs and all(os.stat(f"/proc/{p}").st_uid == alice_uid for p in alice_procs)
    assert (os.stat(bobs).st_uid, os.stat(bobs).st_mode & 0o777) == (
        bob_answers[0]["ids"][0],
        0o700,
    )
    api = ServiceApi(hub)
    logs = api.ok("GET", f"/api/hubgate/clusters/{clusters['bob'].name}/logs", user="bob")
    assert "Scheduler at" in logs["scheduler"], logs


def memory_holds(pid: int, needles: list[bytes]) -> list[bytes]:
    """Which of ``needles`` are anywhere in the memory of ``pid`` (read as root)."""
    found: set[bytes] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue  # [vvar] and the like
            found.update(n for n in needles if n in chunk)
    return sorted(found)


def test_no_secret_of_one_cluster_reaches_anothers_memory(hub: RunningHub) -> None:
    """The fork server serves every user: alice's environment, handed to her processes
    only, and the service's token must not be in bob's processes forked after hers."""
    alice_secret = "alice-only-" + os.urandom(12).hex()
    alice, bob = gateway_for(hub, "alice"), gateway_for(hub, "bob")
    options = alice.cluster_options()
    options.environment = {"ALICE_SECRET": alice_secret}
    alices = alice.new_cluster(options, shutdown_on_close=False)
    bobs = None
    try:
        alices.scale(1)
        with alices.get_client(set_as_default=False) as client:
            client.wait_for_workers(1, timeout=120)
            assert set(client.run(lambda: os.environ["ALICE_SECRET"]).values()) == {alice_secret}
            assert client.run_on_scheduler(lambda: os.environ["ALICE_SECRET"]) == alice_secret
        bobs = bob.new_cluster(shutdown_on_close=False)
        bobs.scale(1)
        with bobs.get_client(set_as_default=False) as bob_client:
            bob_client.wait_for_workers(1, timeout=120)
        needles = [
            alice_secret.encode(),
            service_secrets(service_pid(hub))["JUPYTERHUB_API_TOKEN"].encode(),
        ]
        folder = hub.settings.cluster_work_dir / bobs.name
        procs = processes_in(folder)
        assert len(procs) == 2, procs  # his scheduler and worker
        for pid in procs:
            assert memory_holds(pid, needles) == [], f"found in bob's {procs[pid]}"
        # the check can find what is there: alice's own scheduler holds her secret
        alice_procs = processes_in(hub.settings.cluster_work_dir / alices.name)
        assert all(memory_holds(p, needles[:1]) == needles[:1] for p in alice_procs)
    finally:
        alice.stop_cluster(alices.name)
        alices.close()
        if bobs is not None:
            bob.stop_cluster(bobs.name)
            bobs.close()
        alice.close()
        bob.close()


def test_setup_script_runs_as_the_user(hub: RunningHub, clusters: dict[str, GatewayCluster]):
    gateway = gateway_for(hub, "bob")
    options = gateway.cluster_options()
    options.worker_setup = 'export SETUP_IDS="$(id -u) $(id -g) $(id -G)"'
    with (
        gateway,
        gateway.new_cluster(options, shutdown_on_close=True) as cluster,
        cluster.get_client(set_as_default=False) as client,
    ):
        cluster.scale(1)
        client.wait_for_workers(1, timeout=120)
        [(setup_ids, uid)] = client.run(lambda: (os.environ["SETUP_IDS"], os.getuid())).values()
    bob_uid = run_probes(clusters["bob"], {}, {})[0]["ids"][0]
    assert uid == bob_uid
    assert setup_ids == f"{bob_uid} {bob_uid} {bob_uid}"


@contextmanager
def scheduler_client(gateway: Gateway) -> Iterator[Client]:
    """A client of a new cluster; both closed (and the cluster stopped) on leaving."""
    with (
        gateway.new_cluster(shutdown_on_close=True) as cluster,
        cluster.get_client(set_as_default=False) as client,
    ):
        yield client


def test_uids_are_kept_in_the_database_across_a_restart(hub_factory) -> None:
    hub = hub_factory()
    uids: dict[str, int] = {}
    for user in ("alice", "bob"):
        with gateway_for(hub, user) as gateway, scheduler_client(gateway) as client:
            uids[user] = client.run_on_scheduler(os.getuid)
    assert uids["alice"] != uids["bob"]

    # the uids of the restarted service come from its database
    restart_service(hub)

    for user in ("bob", "alice"):  # the other order: allocation order does not matter
        with gateway_for(hub, user) as gateway, scheduler_client(gateway) as client:
            assert client.run_on_scheduler(os.getuid) == uids[user]


# --- users without an account of their own ------------------------------------------------

SYSTEM_MODE = """
c.LocalBackend.account_mode = "system"
c.LocalBackend.account_template = "{username}"
"""


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def system_mode_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    running = start_hub(tmp_path_factory.mktemp("system-hub"), hubgate_config_extra=SYSTEM_MODE)
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("hub_user", "message"),
    [
        ("root", "which is the service's own account: clusters never run as the service"),
        ("daemon", "(uid 1), a system account (uids below 1000 are refused)"),
        ("nosuch-account", "There is no system account 'nosuch-account' for the hub user"),
        # above min_uid but the system's: Debian's slurm-wlm makes slurm uid 64030
        ("slurm", "a system account (uids 60000..64999 are the system's)"),
    ],
)
def test_user_without_an_account_of_their_own_gets_a_403(
    system_mode_hub: RunningHub, hub_user: str, message: str
) -> None:
    if hub_user == "slurm" and not _has_account("slurm"):
        pytest.skip("no slurm account here (Debian's slurm-wlm, installed by bootstrap, has one)")
    hub = system_mode_hub
    hub.api("POST", f"/users/{hub_user}")
    hub.tokens[hub_user] = hub.make_token(hub_user)
    api = ServiceApi(hub)
    before = set(os.listdir(hub.settings.cluster_work_dir))
    for path, body in (
        ("/api/v1/clusters/", {"cluster_options": {}}),
        ("/api/hubgate/clusters", {"options": {}}),
    ):
        reply = api.request("POST", path, body, user=hub_user)
        assert reply.status == 403, reply.text
        check_with_openapi("POST", path, reply)
        assert message in reply.error, reply.error
    # nothing was started or recorded for them
    assert set(os.listdir(hub.settings.cluster_work_dir)) == before
    assert api.names(hub_user) == set()
