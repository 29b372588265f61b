"""Persistence of clusters in a SQL database (SQLite by default, PostgreSQL in production).

The service keeps its clusters in memory and writes every change through to the
database, so a restart finds them again. SQLAlchemy's calls block, so they all run in
one dedicated thread: writes keep their order and the event loop never waits on disk.
Secrets (the cluster token and TLS material) are encrypted with the service's keys.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
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
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
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

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and make the schema current (``schema.prepare_schema``); raises
        ``SchemaError`` with what to do when this hubgate cannot run on it."""
        await self._run(self._open)

    def _open(self) -> None:
        engine = create_engine(self.url, future=True, pool_pre_ping=True)
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

    async def save(self, cluster: Cluster) -> None:
        """Insert or update the cluster and its workers (a snapshot taken now)."""
        row, workers = self._to_rows(cluster)
        await self._run(self._save, row, workers)

    def _upsert(self, table: Table, row: dict[str, Any], keys: list[str]) -> Any:
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(table).values(**row)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={k: v for k, v in row.items() if k not in keys}
        )

    def _save(self, row: dict[str, Any], workers: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._upsert(clusters_table, row, ["name"]))
            for w in workers:
                conn.execute(self._upsert(workers_table, w, ["cluster_name", "name"]))

    async def delete_older_than(self, seconds: float) -> int:
        """Forget stopped clusters that ended more than ``seconds`` ago."""
        return await self._run(self._delete_older_than, time.time() - seconds)

    def _delete_older_than(self, cutoff: float) -> int:
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
            return len(names)

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
        return rows, workers

    # --- conversions ------------------------------------------------------------------

    def _to_rows(self, c: Cluster) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        secrets = json.dumps(
            {
                "token": c.token,
                "credentials": c.credentials.to_json(),
                "dashboard_secret": c.dashboard_secret,
            }
        )
        row = {
            "name": c.name,
            "username": c.username,
            "status": c.status.value,
            "reason": c.reason,
            "options": c.options,
            "config": c.config.to_json(),
            "secrets": self._box.encrypt(secrets.encode()),
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
        }
        workers = [
            {
                "cluster_name": c.name,
                "name": w.name,
                "status": w.status.value,
                "state": w.state,
                "created": w.created,
                "stopped": w.stopped,
                "reason": w.reason,
            }
            for w in c.workers.values()
        ]
        return row, workers

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
            )
        return cluster
