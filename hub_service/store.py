"""Persistence of clusters in a SQL database (SQLite by default, PostgreSQL in production).

The service keeps its clusters in memory and writes every change through to the
database, so a restart finds them again. SQLAlchemy's calls block, so they all run in
one dedicated thread: writes keep their order and the event loop never waits on disk.
Secrets (the cluster token and TLS material) are encrypted with the service's keys.

A save costs what changed, not the size or age of the cluster: the columns of the
cluster row that differ from the row last written, the rows of the workers marked
unsaved (``Worker.unsaved``) in one batch, one delete for the workers the cluster forgot.
Saves of a cluster that queue while the thread is busy merge into one write.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError

from .cluster_config import ClusterConfig
from .model import Adaptive, Cluster, ClusterStatus, Worker, WorkerStatus
from .schema import prepare_schema
from .secrets import SecretBox
from .tls import ClusterCredentials

metadata = MetaData()

clusters_table = Table(
    "clusters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("username", String(255), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("reason", Text, nullable=False, default=""),
    Column("options", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("secrets", LargeBinary, nullable=False),
    Column("created", Float, nullable=False),
    Column("started", Float),
    Column("stopped", Float, index=True),
    Column("scheduler_state", JSON, nullable=False),
    Column("scheduler_address", String(255), nullable=False, default=""),
    Column("dashboard_address", String(255), nullable=False, default=""),
    Column("requested_workers", Integer, nullable=False, default=0),
    Column("adaptive_active", Boolean, nullable=False, default=False),
    Column("adaptive_minimum", Integer, nullable=False, default=0),
    Column("adaptive_maximum", Integer, nullable=False, default=0),
    Column("lease_expires", Float),
    Column("worker_counter", Integer, nullable=False, default=0),
    Column("events", JSON, nullable=False),
    Column("versions", JSON, nullable=False),
    # the owner's single-user server that created it (Cluster.server); NULL: none
    Column("server", String(255)),
    Column("display_name", String(64), nullable=False),
)

workers_table = Table(
    "workers",
    metadata,
    Column(
        "cluster_name",
        String(64),
        ForeignKey("clusters.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("state", JSON, nullable=False),
    Column("created", Float, nullable=False),
    Column("stopped", Float),
    Column("reason", Text, nullable=False, default=""),
)


# Uids of their own for hub users without system accounts (the local backend's
# uid-range mode): given once, never to two users, kept across restarts.
user_uids_table = Table(
    "user_uids",
    metadata,
    Column("username", String(255), primary_key=True),
    Column("uid", Integer, nullable=False, unique=True),
    Column("created", Float, nullable=False),
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


@dataclass
class _Changes:
    """What a save of one cluster writes: its latest row, the rows of its workers that
    changed (by name) and the names of the workers it forgot. ``job`` is the store
    thread's task that will write it."""

    row: dict[str, Any]
    workers: dict[str, dict[str, Any]]
    forgotten: set[str]
    job: Future[None] | None = None

    def merge(self, newer: _Changes) -> None:
        """Take in a later save of the same cluster: its state wins."""
        self.row = newer.row
        for name in newer.forgotten:
            self.workers.pop(name, None)
        self.forgotten |= newer.forgotten
        self.forgotten.difference_update(newer.workers)
        self.workers.update(newer.workers)


_WORKER_UPDATED = ("status", "state", "created", "stopped", "reason")


async def _until_done(job: Future[None]) -> None:
    # Shielded: a caller cancelled on the way out (the manager closing) must not take
    # the queued write with it; close() waits for it.
    await asyncio.shield(asyncio.wrap_future(job))


def needs_pre_ping(url: str) -> bool:
    """Whether a pooled connection is tested before each use: a database server may have
    dropped it; an SQLite file's cannot drop (testing it was a query per write)."""
    return make_url(url).get_backend_name() != "sqlite"


class ClusterStore:
    """Reads and writes clusters; every public method is a coroutine run in the
    store's own thread."""

    def __init__(self, url: str, secret_box: SecretBox, upgrade_db: bool | None = None):
        self.url = url
        self._box = secret_box
        # may an older schema be upgraded at open: None, only a SQLite file (copied first)
        self.upgrade_db = upgrade_db
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hubgate-db")
        self._engine: Engine | None = None
        # Saves not written yet, by cluster (filled on the event loop, emptied by the
        # store thread): at most one queued write per cluster.
        self._queued: dict[str, _Changes] = {}
        self._queue_lock = threading.Lock()
        # The cluster rows as last written or loaded (store thread only).
        self._written: dict[str, dict[str, Any]] = {}
        # Encrypted secrets by cluster, sealed once (event loop only): they never change,
        # and a fresh encryption would differ from the written one every time.
        self._sealed: dict[str, bytes] = {}

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and make the schema current (``schema.prepare_schema``); raises
        ``SchemaError`` with what to do when this hubgate cannot run on it."""
        await self._run(self._open)

    def _open(self) -> None:
        engine = create_engine(self.url, future=True, pool_pre_ping=needs_pre_ping(self.url))
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        upgrade = self.upgrade_db
        if upgrade is None:
            upgrade = engine.dialect.name == "sqlite"
        try:
            prepare_schema(engine, metadata, upgrade=upgrade)
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._run(self._engine.dispose)
        self._executor.shutdown(wait=True)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("ClusterStore.open() was not called")
        return self._engine

    # --- writes ---------------------------------------------------------------------

    def save(self, cluster: Cluster) -> Coroutine[Any, Any, None]:
        """Queue what changed in the cluster since its last save, as it is now (before
        any await: the snapshot is taken by this call); await the result to know it is
        written. A failed write stays queued and goes with the cluster's next save."""
        changes = self._changes_of(cluster)
        with self._queue_lock:
            queued = self._queued.get(cluster.name)
            if queued is None:
                queued = self._queued[cluster.name] = changes
            else:
                queued.merge(changes)
            if queued.job is None:
                queued.job = self._executor.submit(self._write_queued, cluster.name)
            return _until_done(queued.job)

    def _write_queued(self, name: str) -> None:
        with self._queue_lock:
            changes = self._queued.pop(name)
        try:
            self._write(changes)
        except BaseException:
            with self._queue_lock:
                changes.job = None
                newer = self._queued.get(name)
                if newer is not None:
                    changes.merge(newer)
                    changes.job = newer.job
                self._queued[name] = changes
            raise

    def _write(self, changes: _Changes) -> None:
        row = changes.row
        name = row["name"]
        last = self._written.get(name)
        if last is None:
            cluster_stmt = self._upsert_cluster(row)
        else:
            changed = {k: v for k, v in row.items() if k not in last or last[k] != v}
            cluster_stmt = (
                update(clusters_table).where(clusters_table.c.name == name).values(**changed)
                if changed
                else None
            )
        if cluster_stmt is None and not changes.workers and not changes.forgotten:
            return
        with self.engine.begin() as conn:
            if cluster_stmt is not None:
                conn.execute(cluster_stmt)
            if changes.workers:
                # one executemany, whatever the number of workers
                conn.execute(self._upsert_workers(), list(changes.workers.values()))
            if changes.forgotten:
                conn.execute(
                    delete(workers_table).where(
                        workers_table.c.cluster_name == name,
                        workers_table.c.name.in_(sorted(changes.forgotten)),
                    )
                )
        self._written[name] = row

    def _insert(self) -> Any:
        return pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert

    def _upsert_cluster(self, row: dict[str, Any]) -> Any:
        stmt = self._insert()(clusters_table).values(**row)
        return stmt.on_conflict_do_update(
            index_elements=["name"], set_={k: v for k, v in row.items() if k != "name"}
        )

    def _upsert_workers(self) -> Any:
        stmt = self._insert()(workers_table)
        return stmt.on_conflict_do_update(
            index_elements=["cluster_name", "name"],
            set_={column: stmt.excluded[column] for column in _WORKER_UPDATED},
        )

    async def delete_older_than(self, seconds: float) -> int:
        """Forget stopped clusters that ended more than ``seconds`` ago."""
        names = await self._run(self._delete_older_than, time.time() - seconds)
        for name in names:
            self._sealed.pop(name, None)
        return len(names)

    def _delete_older_than(self, cutoff: float) -> list[str]:
        with self.engine.begin() as conn:
            names = [
                r.name
                for r in conn.execute(
                    select(clusters_table.c.name).where(clusters_table.c.stopped < cutoff)
                )
            ]
            if names:
                conn.execute(delete(workers_table).where(workers_table.c.cluster_name.in_(names)))
                conn.execute(delete(clusters_table).where(clusters_table.c.name.in_(names)))
        for name in names:
            self._written.pop(name, None)
        return names

    async def uid_for(self, username: str, first: int, last: int) -> int:
        """The uid of ``username``: the one recorded, else the lowest free one in
        ``first..last`` (recorded now). ``LookupError`` when none is free. A user keeps
        their uid when the range changes later."""
        return await self._run(self._uid_for, username, first, last)

    def _uid_for(self, username: str, first: int, last: int) -> int:
        for _attempt in range(2):  # another service on the database may race us once
            try:
                return self._find_or_record_uid(username, first, last)
            except IntegrityError:
                continue
        raise LookupError(f"could not record a uid for {username!r}")

    def _find_or_record_uid(self, username: str, first: int, last: int) -> int:
        table = user_uids_table
        with self.engine.begin() as conn:
            known = conn.execute(select(table.c.uid).where(table.c.username == username)).scalar()
            if known is not None:
                return int(known)
            used = set(
                conn.execute(select(table.c.uid).where(table.c.uid.between(first, last)))
                .scalars()
                .all()
            )
            uid = next((u for u in range(first, last + 1) if u not in used), None)
            if uid is None:
                raise LookupError(f"all {last - first + 1} uids of {first}..{last} are taken")
            conn.execute(table.insert().values(username=username, uid=uid, created=time.time()))
            return uid

    # --- reads ----------------------------------------------------------------------

    async def load_all(self) -> list[Cluster]:
        rows, worker_rows = await self._run(self._load_all)
        by_cluster: dict[str, list[Any]] = {}
        for w in worker_rows:
            by_cluster.setdefault(w.cluster_name, []).append(w)
        return [self._from_rows(r, by_cluster.get(r.name, [])) for r in rows]

    def _load_all(self) -> tuple[list[Any], list[Any]]:
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(clusters_table)))
            workers = list(conn.execute(select(workers_table)))
        self._written.update((r.name, dict(r._mapping)) for r in rows)
        return rows, workers

    # --- conversions ------------------------------------------------------------------

    def _changes_of(self, c: Cluster) -> _Changes:
        """The cluster's row, and what changed among its workers since the last save
        (which this marks saved)."""
        workers = {}
        for w in c.workers.values():
            if w.unsaved:
                workers[w.name] = {
                    "cluster_name": c.name,
                    "name": w.name,
                    "status": w.status.value,
                    "state": w.state,
                    "created": w.created,
                    "stopped": w.stopped,
                    "reason": w.reason,
                }
                w.unsaved = False
        forgotten, c.forgotten_workers = c.forgotten_workers, set()
        return _Changes(self._cluster_row(c), workers, forgotten)

    def _sealed_secrets(self, c: Cluster) -> bytes:
        """The cluster's secrets, encrypted (with the first key: after a key rotation,
        the first save after the restart writes them anew)."""
        sealed = self._sealed.get(c.name)
        if sealed is None:
            secrets = json.dumps(
                {
                    "token": c.token,
                    "credentials": c.credentials.to_json(),
                    "dashboard_secret": c.dashboard_secret,
                }
            )
            sealed = self._sealed[c.name] = self._box.encrypt(secrets.encode())
        return sealed

    def _cluster_row(self, c: Cluster) -> dict[str, Any]:
        return {
            "name": c.name,
            "username": c.username,
            "status": c.status.value,
            "reason": c.reason,
            "options": c.options,
            "config": c.config.to_json(),
            "secrets": self._sealed_secrets(c),
            "created": c.created,
            "started": c.started,
            "stopped": c.stopped,
            "scheduler_state": c.scheduler_state,
            "scheduler_address": c.scheduler_address,
            "dashboard_address": c.dashboard_address,
            "requested_workers": c.requested_workers,
            "adaptive_active": c.adaptive.active,
            "adaptive_minimum": c.adaptive.minimum,
            "adaptive_maximum": c.adaptive.maximum,
            "lease_expires": c.lease_expires,
            "worker_counter": c.worker_counter,
            "events": [list(e) for e in c.events],
            "versions": c.versions,
            "server": c.server,
            "display_name": c.display_name,
        }

    def _from_rows(self, r: Any, worker_rows: list[Any]) -> Cluster:
        secrets = json.loads(self._box.decrypt(r.secrets))
        cluster = Cluster(
            name=r.name,
            username=r.username,
            options=r.options,
            config=ClusterConfig.from_json(r.config),
            token=secrets["token"],
            credentials=ClusterCredentials.from_json(secrets["credentials"]),
            dashboard_secret=secrets.get("dashboard_secret", ""),
            status=ClusterStatus(r.status),
            reason=r.reason,
            created=r.created,
            started=r.started,
            stopped=r.stopped,
            scheduler_state=r.scheduler_state,
            scheduler_address=r.scheduler_address,
            dashboard_address=r.dashboard_address,
            requested_workers=r.requested_workers,
            adaptive=Adaptive(
                active=r.adaptive_active, minimum=r.adaptive_minimum, maximum=r.adaptive_maximum
            ),
            lease_expires=r.lease_expires,
            worker_counter=r.worker_counter,
            versions=r.versions,
            server=r.server,
            display_name=r.display_name,
        )
        cluster.events = deque(((t, m) for t, m in r.events), maxlen=50)
        for w in worker_rows:
            cluster.workers[w.name] = Worker(
                name=w.name,
                status=WorkerStatus(w.status),
                state=w.state,
                created=w.created,
                stopped=w.stopped,
                reason=w.reason,
                unsaved=False,
            )
        return cluster
