"""System-account mode (issue #10, item 1), through the real hub.

The hub maps each hub user to a system account of their own, TLJH-style
(``account_template = "hgsys-{username}"``): alice's schedulers, workers and setup
scripts run as ``hgsys-alice`` with her home, her primary group and the supplementary
groups the group database gives her account (as her login and JupyterHub's
LocalProcessSpawner give them), bob's as ``hgsys-bob``; bob cannot read alice's cluster
folder nor her group's data; a hub user without an account gets a 403.

The accounts are real (``useradd``, so this needs root). They are made once and kept,
like the Slurm tests' ``hgalice``: nothing here removes an account another run may use.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from dask_gateway import GatewayCluster

from hubgate.tooling.hubrunner import RunningHub
from tests.e2e.service_api import ServiceApi, check_with_openapi
from tests.e2e.test_accounts import alice_and_bob_clusters, gateway_for, processes_in
from tests.fixtures.hub import start_hub

pytestmark = pytest.mark.slow
# The probes below run in the clusters, which cannot import this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PREFIX = "hgsys-"
SHARED_GROUP = "hgsys-shared"  # alice's account is a member, bob's is not
CONFIG = f"""
c.LocalBackend.account_mode = "system"
c.LocalBackend.account_template = "{PREFIX}{{username}}"
"""


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, f"{argv}: {proc.stderr}"


def _ensure_group(name: str) -> grp.struct_group:
    try:
        return grp.getgrnam(name)
    except KeyError:
        _run("groupadd", name)
        return grp.getgrnam(name)


def _ensure_account(name: str, groups: list[str]) -> pwd.struct_passwd:
    """The system account ``name`` with a home and exactly ``groups`` as supplementary
    groups (made if missing, corrected if an earlier run left it otherwise)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        _run("useradd", "--create-home", "--shell", "/bin/bash", "--user-group", name)
    _run("usermod", "-G", ",".join(groups), name)
    entry = pwd.getpwnam(name)
    assert entry.pw_uid >= 1000 and entry.pw_gid >= 1000, entry
    assert Path(entry.pw_dir).is_dir() and os.stat(entry.pw_dir).st_uid == entry.pw_uid
    return entry


@pytest.fixture(scope="module")
def accounts() -> dict[str, pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip("creating system accounts and running clusters as them needs root")
    shared = _ensure_group(SHARED_GROUP)
    made = {
        "alice": _ensure_account(PREFIX + "alice", [SHARED_GROUP]),
        "bob": _ensure_account(PREFIX + "bob", []),
    }
    assert PREFIX + "alice" in grp.getgrgid(shared.gr_gid).gr_mem
    return made


@pytest.fixture(scope="module")
def shared_data(accounts: dict[str, pwd.struct_passwd]) -> Iterator[Path]:
    """A file only members of the shared group may read (root:hgsys-shared, 0640 in a
    0750 folder), in a fresh folder every account can pass through."""
    top = Path(tempfile.mkdtemp(prefix="hgsys-data-"))
    try:
        top.chmod(0o711)
        folder = top / "group-only"
        folder.mkdir(mode=0o750)
        data = folder / "data.txt"
        data.write_text("for the shared group\n")
        gid = grp.getgrnam(SHARED_GROUP).gr_gid
        for path, mode in ((folder, 0o750), (data, 0o640)):
            os.chown(path, 0, gid)
            path.chmod(mode)
        yield data
    finally:
        shutil.rmtree(top)


@pytest.fixture(scope="module")
def system_hub(
    tmp_path_factory: pytest.TempPathFactory, accounts: dict[str, pwd.struct_passwd]
) -> Iterator[RunningHub]:
    running = start_hub(tmp_path_factory.mktemp("system-accounts-hub"), hubgate_config_extra=CONFIG)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def clusters(system_hub: RunningHub) -> Iterator[dict[str, GatewayCluster]]:
    yield from alice_and_bob_clusters(system_hub)


def whoami(paths: dict[str, str]) -> dict[str, Any]:
    """Run in a scheduler or worker: its account and what it can read."""
    import os
    import pwd

    def attempt(path: str) -> str:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                with open(path, "rb") as f:
                    f.read(1)
        except PermissionError:
            return "PermissionError"
        except Exception as exc:
            return type(exc).__name__
        return "allowed"

    return {
        "name": pwd.getpwuid(os.getuid()).pw_name,
        "ids": (os.getuid(), os.geteuid(), os.getgid(), os.getegid()),
        "groups": sorted(os.getgroups()),
        "env": {k: os.environ.get(k) for k in ("HOME", "USER", "LOGNAME")},
        "home_writable": os.access(os.environ["HOME"], os.W_OK),
        "reads": {label: attempt(path) for label, path in paths.items()},
    }


def ask_everyone(cluster: GatewayCluster, paths: dict[str, str]) -> list[dict[str, Any]]:
    """``whoami`` from the scheduler and from every worker."""
    client = cluster.get_client(set_as_default=False)
    try:
        client.wait_for_workers(1, timeout=120)
        answers = [client.run_on_scheduler(whoami, paths)]
        answers += list(client.run(whoami, paths).values())
    finally:
        client.close()
    return answers


def expected_groups(entry: pwd.struct_passwd) -> list[int]:
    """What the group database gives the account: its primary group and its others."""
    return sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))


def test_each_users_processes_run_as_their_system_account(
    system_hub: RunningHub,
    accounts: dict[str, pwd.struct_passwd],
    clusters: dict[str, GatewayCluster],
    shared_data: Path,
) -> None:
    work = system_hub.settings.cluster_work_dir
    alices = work / clusters["alice"].name
    paths = {
        "alice's cluster folder": str(alices),
        "alice's scheduler log": str(alices / "scheduler.log"),
        "alice's TLS key": str(alices / "scheduler" / "scheduler.key"),
        "the shared group's data": str(shared_data),
    }
    answers = {user: ask_everyone(clusters[user], paths) for user in ("alice", "bob")}
    for path in paths.values():  # they exist: the refusals below are about permissions
        assert Path(path).exists(), path

    assert expected_groups(accounts["alice"]) == sorted(
        {accounts["alice"].pw_gid, grp.getgrnam(SHARED_GROUP).gr_gid}
    )
    assert expected_groups(accounts["bob"]) == [accounts["bob"].pw_gid]
    for user, entry in accounts.items():
        assert len(answers[user]) == 2  # the scheduler and one worker
        for answer in answers[user]:
            assert answer["name"] == entry.pw_name
            uid, gid = entry.pw_uid, entry.pw_gid
            assert answer["ids"] == (uid, uid, gid, gid)
            assert answer["groups"] == expected_groups(entry), (user, answer["groups"])
            assert answer["env"] == {
                "HOME": entry.pw_dir,
                "USER": entry.pw_name,
                "LOGNAME": entry.pw_name,
            }
            assert answer["home_writable"]
        # the processes the service started are the account's, in its 0700 folder
        folder = work / clusters[user].name
        procs = processes_in(folder)
        assert len(procs) == 2, procs
        assert all(os.stat(f"/proc/{p}").st_uid == entry.pw_uid for p in procs)
        info = os.stat(folder)
        assert (info.st_uid, info.st_mode & 0o777) == (entry.pw_uid, 0o700)

    for answer in answers["alice"]:  # her own folder, and her group's data
        assert answer["reads"] == dict.fromkeys(paths, "allowed"), answer["reads"]
    for answer in answers["bob"]:
        assert answer["reads"] == dict.fromkeys(paths, "PermissionError"), answer["reads"]

    # a computation works, as alice
    client = clusters["alice"].get_client(set_as_default=False)
    try:
        future = client.submit(lambda x: (x * 2, os.getuid()), 21)
        assert future.result(timeout=120) == (42, accounts["alice"].pw_uid)
    finally:
        client.close()


def test_setup_script_runs_as_the_system_account(
    system_hub: RunningHub, accounts: dict[str, pwd.struct_passwd], shared_data: Path
) -> None:
    gateway = gateway_for(system_hub, "alice")
    options = gateway.cluster_options()
    # The setup runs in a shell the service execs (not the fork server's path).
    options.worker_setup = (
        'export SETUP_WHO="$(id -un) $(id -u) $(id -g)"\n'
        'export SETUP_GROUPS="$(id -G)"\n'
        f'export SETUP_READ="$(cat {shared_data})"\n'
        'export SETUP_HOME="$HOME"'
    )
    cluster = gateway.new_cluster(options, shutdown_on_close=False)
    try:
        cluster.scale(1)
        with cluster.get_client(set_as_default=False) as client:
            client.wait_for_workers(1, timeout=120)
            [seen] = client.run(
                lambda: {
                    k: os.environ[k]
                    for k in ("SETUP_WHO", "SETUP_GROUPS", "SETUP_READ", "SETUP_HOME")
                }
            ).values()
    finally:
        gateway.stop_cluster(cluster.name)
        cluster.close()
        gateway.close()
    alice = accounts["alice"]
    assert seen["SETUP_WHO"] == f"{alice.pw_name} {alice.pw_uid} {alice.pw_gid}"
    assert sorted(int(g) for g in seen["SETUP_GROUPS"].split()) == expected_groups(alice)
    assert seen["SETUP_READ"] == shared_data.read_text().strip()
    assert seen["SETUP_HOME"] == alice.pw_dir


@pytest.mark.parametrize(
    ("hub_user", "message"),
    [
        # the template is applied: "root" is hgsys-root (missing), never root itself
        ("root", "There is no system account 'hgsys-root' for the hub user 'root'"),
        ("carol", "There is no system account 'hgsys-carol' for the hub user 'carol'"),
    ],
)
def test_hub_user_without_an_account_gets_a_403(
    system_hub: RunningHub, hub_user: str, message: str
) -> None:
    hub = system_hub
    with pytest.raises(KeyError):
        pwd.getpwnam(PREFIX + hub_user)
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
    assert set(os.listdir(hub.settings.cluster_work_dir)) == before
    assert api.names(hub_user) == set()
