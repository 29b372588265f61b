"""Saving clusters costs what changed (hub_service/store.py): statements counted with a
listener on the engine, the real manager and store on SQLite (and a real PostgreSQL
server, slow), a stand-in backend (tests/fixtures/standin.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import event, insert, select
from sqlalchemy.engine import Engine

from hubgate.hub_service.model import Cluster, WorkerStatus
from hubgate.hub_service.secrets import SecretBox
from hubgate.hub_service.store import clusters_table, workers_table
from tests.fixtures.standin import StandInService, standin_service

WORKERS = 20
BOX = SecretBox([Fernet.generate_key()])


@dataclass
class Writes:
    statements: int = 0
    rows: int = 0
    sql: list[str] = field(default_factory=list)


class StatementCounter:
    """Counts what the engine executes: statements (an executemany once) and the rows
    they carry."""

    def __init__(self, engine: Engine) -> None:
        self.writes = Writes()
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(
        self, conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool
    ) -> None:
        self.writes.statements += 1
        self.writes.rows += len(params) if many else 1
        self.writes.sql.append(statement)

    def reset(self) -> Writes:
        done, self.writes = self.writes, Writes()
        return done


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_db_url"))
    return f"sqlite:///{tmp_path / 'hubgate.sqlite'}"


@asynccontextmanager
async def service_on(db_url: str, **settings: Any) -> AsyncIterator[StandInService]:
    async with standin_service(db_url, BOX, **settings) as service:
        yield service


def rows_of(engine: Engine, cluster: Cluster) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            r.name: r
            for r in conn.execute(
                select(workers_table).where(workers_table.c.cluster_name == cluster.name)
            )
        }


async def cycles(service: StandInService, cluster: Cluster, workers_started: int) -> None:
    """Scale up and down until ``workers_started`` more workers came and went."""
    target = cluster.worker_counter + workers_started
    while cluster.worker_counter < target:
        await service.scale(cluster, WORKERS)
        await service.scale(cluster, 0)


async def test_a_scale_step_writes_the_same_whatever_the_cluster_history(db_url: str) -> None:
    async with service_on(db_url) as service:
        counter = StatementCounter(service.store.engine)
        cluster = await service.running_cluster()
        costs: dict[str, list[Writes]] = {}
        for history in ("new cluster", "after 200 workers came and went"):
            if history != "new cluster":
                await cycles(service, cluster, 200)
            counter.reset()
            await service.scale(cluster, WORKERS, joins_one_by_one=True)
            up = counter.reset()
            await service.scale(cluster, WORKERS + 1, joins_one_by_one=True)
            one_more = counter.reset()
            await service.scale(cluster, 0)
            costs[history] = [up, one_more]
        for history, (up, one_more) in costs.items():
            # Each join saves one worker row; the launches, at most a row per worker
            # and the cluster row a few times. The old store wrote every worker row on
            # every save: hundreds here.
            assert up.rows <= 2 * WORKERS + 4, (history, up)
            # One more worker: the scale request, its launch, its join.
            assert one_more.rows <= 4 and one_more.statements <= 4, (history, one_more)


async def test_saves_queued_behind_a_busy_store_merge_into_one_write_of_the_last_state(
    tmp_path: Path,
) -> None:
    async with service_on(f"sqlite:///{tmp_path / 'hubgate.sqlite'}") as service:
        cluster = await service.running_cluster()
        engine = service.store.engine
        counter = StatementCounter(engine)
        loop = asyncio.get_running_loop()
        holding, release = asyncio.Event(), threading.Event()

        def hold_first_write(*args: Any) -> None:  # in the store thread
            if not release.is_set():
                loop.call_soon_threadsafe(holding.set)
                release.wait(60)

        event.listen(engine, "before_cursor_execute", hold_first_write)
        service.manager.renew_lease(cluster, 1)
        await holding.wait()  # the store thread is writing the first lease now
        # Each renewal queues its save at once (before any await); all wait for the
        # thread, behind the first.
        for seconds in range(2, 12):
            service.manager.renew_lease(cluster, seconds)
        last = cluster.lease_expires
        release.set()
        await service.settled()
        event.remove(engine, "before_cursor_execute", hold_first_write)
        writes = counter.reset()
        assert writes.statements == 2, writes.sql
        with engine.connect() as conn:
            stored = conn.execute(
                select(clusters_table.c.lease_expires).where(clusters_table.c.name == cluster.name)
            ).scalar()
        assert stored == last


async def test_a_failed_write_goes_with_the_next_save(tmp_path: Path) -> None:
    async with service_on(f"sqlite:///{tmp_path / 'hubgate.sqlite'}") as service:
        cluster = await service.running_cluster()
        engine = service.store.engine
        failed: list[str] = []

        def fail_worker_writes_once(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            if not failed and statement.startswith("INSERT INTO workers"):
                failed.append(statement)
                raise RuntimeError("the database went away")

        event.listen(engine, "before_cursor_execute", fail_worker_writes_once)
        await service.scale(cluster, 1)
        event.remove(engine, "before_cursor_execute", fail_worker_writes_once)
        assert failed
        # The next save of the cluster carries what the failed one lost...
        service.manager.renew_lease(cluster, 5)
        await service.settled()
        [worker] = cluster.workers.values()
        assert rows_of(engine, cluster)[worker.name].status == "running"
        # ...and once written, a change writes only itself.
        counter = StatementCounter(engine)
        service.manager.renew_lease(cluster, 10)
        await service.settled()
        writes = counter.reset()
        assert writes.rows == 1, writes.sql


async def test_finished_workers_beyond_the_kept_ones_are_forgotten_everywhere(
    db_url: str,
) -> None:
    async with service_on(db_url, finished_workers_kept=3) as service:
        cluster = await service.running_cluster()
        await cycles(service, cluster, 3 * WORKERS)
        await service.scale(cluster, 2)
        finished = [w for w in cluster.workers.values() if w.finished]
        assert len(finished) == 3
        assert len(cluster.workers) == 2 + 3
        # the most recent ones are kept
        assert max(w.stopped or 0 for w in finished) == max(
            w.stopped or 0 for w in cluster.workers.values() if w.finished
        )
        stored = rows_of(service.store.engine, cluster)
        assert set(stored) == set(cluster.workers)
        # their logs, and the live workers', still read (the stand-in's log is one line)
        logs = await service.manager.logs(cluster, 10)
        assert logs["workers"] == {name: f"log of {name}" for name in cluster.workers}
        # names are never reused
        names = {int(n.rsplit("-", 1)[1]) for n in cluster.workers}
        assert max(names) == cluster.worker_counter == 3 * WORKERS + 2


async def test_a_restart_takes_over_clusters_and_workers_as_saved(db_url: str) -> None:
    async with service_on(db_url, finished_workers_kept=2) as service:
        cluster = await service.running_cluster()
        await service.scale(cluster, 5)
        await service.scale(cluster, 3)
        before = {n: (w.status, w.state, w.created, w.stopped) for n, w in cluster.workers.items()}
        counter_before = cluster.worker_counter
    async with service_on(db_url, finished_workers_kept=2) as service:
        again = service.manager.clusters[cluster.name]
        assert again.status is cluster.status
        after = {n: (w.status, w.state, w.created, w.stopped) for n, w in again.workers.items()}
        assert after == before
        assert again.worker_counter == counter_before
        counter = StatementCounter(service.store.engine)
        await service.scale(again, 4)
        # The new worker continues the count, and the first save after the restart
        # writes what changed (the secrets once: they are sealed anew with the first key).
        assert f"{again.name[:8]}-{counter_before + 1}" in again.workers
        writes = counter.reset()
        assert writes.rows <= 4, writes.sql
        stored = rows_of(service.store.engine, again)
        assert set(stored) == set(again.workers)
        assert stored[f"{again.name[:8]}-{counter_before + 1}"].status == "running"


async def test_workers_piled_up_by_an_older_release_are_forgotten_at_start(
    db_url: str,
) -> None:
    async with service_on(db_url) as service:
        cluster = await service.running_cluster()
        await service.scale(cluster, 2)
        engine = service.store.engine
        with engine.begin() as conn:
            conn.execute(
                insert(workers_table),
                [
                    {
                        "cluster_name": cluster.name,
                        "name": f"old-{n}",
                        "status": WorkerStatus.STOPPED.value,
                        "state": {"process": -n, "name": f"old-{n}"},
                        "created": float(n),
                        "stopped": float(n + 1),
                        "reason": "",
                    }
                    for n in range(1, 101)
                ],
            )
    async with service_on(db_url, finished_workers_kept=5) as service:
        again = service.manager.clusters[cluster.name]
        await service.settled()
        kept = {n for n, w in again.workers.items() if w.finished}
        assert kept == {f"old-{n}" for n in range(96, 101)}  # the most recent ones
        assert len(again.running_workers()) == 2
        assert set(rows_of(service.store.engine, again)) == set(again.workers)


async def test_writes_ping_a_database_server_but_not_an_sqlite_file(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pooled connection to a database server is tested before each use (the server
    may have dropped it); an SQLite file's cannot drop, and testing it was one more
    query for every write (several per cluster start)."""
    async with standin_service(db_url, BOX) as service:
        dialect = service.store.engine.dialect
        pings: list[object] = []
        real_ping = dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> bool:
            pings.append(dbapi_connection)
            return bool(real_ping(dbapi_connection))

        monkeypatch.setattr(dialect, "do_ping", counted_ping)
        await service.running_cluster()
        await service.settled()
        assert bool(pings) is (dialect.name != "sqlite")
