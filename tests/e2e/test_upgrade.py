"""An upgrade from the previous release keeps its clusters running: the previous
release's service (its own code, tests/fixtures/previous_release.py) creates a cluster
with workers; hubgate is upgraded under it, the way ``pip install -U`` does (the
service's import path now finds this checkout) and the service restarted; the current
service takes over the previous release's database and the same scheduler and worker
processes, which keep computing and scale. SQLite is upgraded at start (after a copy);
on PostgreSQL the service refuses to start until the operator runs ``hubgate
upgrade-db``."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
import pytest
from dask_gateway import Gateway
from dask_gateway.auth import JupyterHubAuth
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine

from hubgate.hub_service.schema import VERSION_TABLE, head_revision
from hubgate.tooling.hubrunner import RunningHub
from tests.fixtures.previous_release import PreviousRelease
from tests.fixtures.service_process import (
    cluster_processes,
    service_pid,
    wait_for_new_service,
    wait_until,
)

pytestmark = pytest.mark.slow

REFUSAL = "run `hubgate upgrade-db`"
# The previous release's schedulers and workers run its code too: PYTHONPATH reaches them.
INHERIT_PYTHONPATH = (
    'c.LocalBackend.inherit_env = ["PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH"]\n'
)


class InstalledCode:
    """What the service imports: a folder on its PYTHONPATH that points at the previous
    release's code, then (``upgrade``) at an empty folder, so that this checkout's
    installation is found instead."""

    def __init__(self, previous: PreviousRelease) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="hubgate-installed-"))
        self.folder.chmod(0o755)  # users' cluster processes read it too
        (self.folder / "nothing").mkdir()
        self.path = self.folder / "site"
        self.path.symlink_to(previous.site)

    def upgrade(self) -> None:
        swap = self.folder / "swap"
        swap.symlink_to(self.folder / "nothing")
        os.replace(swap, self.path)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def installed(previous_release: PreviousRelease) -> Iterator[InstalledCode]:
    code = InstalledCode(previous_release)
    yield code
    code.remove()


def _versioned(engine: Engine) -> str | None:
    if VERSION_TABLE not in inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()


def _upgrade_keeps_clusters(
    hub_factory: Callable[..., RunningHub], installed: InstalledCode, db_url: str | None
) -> None:
    extra = INHERIT_PYTHONPATH + (f"c.HubgateService.db_url = {db_url!r}\n" if db_url else "")
    hub = hub_factory(
        service_environment={"PYTHONPATH": str(installed.path)}, hubgate_config_extra=extra
    )
    data_dir = hub.settings.work_dir / "service-data"
    engine = create_engine(db_url or f"sqlite:///{data_dir / 'hubgate.sqlite'}")
    gateway = Gateway(
        hub.settings.gateway_address,
        proxy_address=hub.settings.proxy_address,
        auth=JupyterHubAuth(api_token=hub.tokens["alice"]),
    )
    clients = []
    cluster = again = None
    try:
        # the previous release runs: its store writes no schema version
        assert _versioned(engine) is None and "clusters" in inspect(engine).get_table_names()
        cluster = gateway.new_cluster(shutdown_on_close=False)
        cluster.scale(2)
        # a client that waits for the scheduler proxy through the service's restart
        # (and, on PostgreSQL, through the refusals until `hubgate upgrade-db`)
        with dask.config.set({"distributed.comm.timeouts.connect": "300s"}):
            clients.append(cluster.get_client(set_as_default=False))
        clients[0].wait_for_workers(2, timeout=120)
        assert clients[0].submit(lambda x: x * 2, 21).result(timeout=60) == 42
        processes = sorted(cluster_processes(hub))
        assert len(processes) == 3, processes  # a scheduler and 2 workers

        installed.upgrade()
        old = service_pid(hub)
        refusals = hub.log_tail(10_000).count(REFUSAL)
        os.kill(old, signal.SIGTERM)
        if db_url is not None:
            # PostgreSQL: the new service will not upgrade it on its own
            wait_until(
                lambda: hub.log_tail(10_000).count(REFUSAL) > refusals,
                120,
                "the upgraded service to refuse the old schema",
            )
            assert _versioned(engine) is None
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            upgrade = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "hubgate",
                    "upgrade-db",
                    "--config",
                    str(hub.settings.work_dir / "hubgate_config.py"),
                ],
                cwd=hub.settings.work_dir,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert upgrade.returncode == 0, upgrade.stderr
            assert f"to {head_revision()}" in upgrade.stdout
        wait_for_new_service(hub, old)
        assert _versioned(engine) == head_revision()
        if db_url is None:
            assert list(data_dir.glob("hubgate.sqlite.*.bak")), "no copy before the upgrade"
            [backup] = data_dir.glob("hubgate.sqlite.*.bak")
            with sqlite3.connect(backup) as copy:
                names = [r[0] for r in copy.execute("SELECT name FROM clusters")]
            copy.close()
            assert names == [cluster.name]

        def running() -> bool:
            reports = {r.name: r for r in gateway.list_clusters()}
            return cluster.name in reports and reports[cluster.name].status.name == "RUNNING"

        wait_until(running, 60, "the cluster to be RUNNING under the upgraded service")
        # the same processes, still computing, through the old and a new connection
        assert sorted(cluster_processes(hub)) == processes
        assert clients[0].submit(lambda x: x + 1, 41).result(timeout=120) == 42
        again = gateway.connect(cluster.name)
        clients.append(again.get_client(set_as_default=False))
        assert clients[1].submit(sum, [1, 2, 3]).result(timeout=60) == 6
        # and it scales: the upgraded service starts a worker of its own
        again.scale(3)
        clients[1].wait_for_workers(3, timeout=120)
        assert sum(clients[1].gather(clients[1].map(lambda x: x, range(30)))) == 435
    finally:
        # clients before the cluster objects whose event loops they run on
        for client in clients:
            client.close()
        for made in (again, cluster):
            if made is not None:
                made.close()
        if cluster is not None:
            gateway.stop_cluster(cluster.name)
            wait_until(lambda: not cluster_processes(hub), 60, "every cluster process to exit")
        gateway.close()
        engine.dispose()


def test_upgrade_from_the_previous_release_keeps_clusters_sqlite(
    hub_factory: Callable[..., RunningHub], installed: InstalledCode
) -> None:
    _upgrade_keeps_clusters(hub_factory, installed, None)


def test_upgrade_from_the_previous_release_keeps_clusters_postgresql(
    hub_factory: Callable[..., RunningHub], installed: InstalledCode, postgres_db_url: str
) -> None:
    _upgrade_keeps_clusters(hub_factory, installed, postgres_db_url)
