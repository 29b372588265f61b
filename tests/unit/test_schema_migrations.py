"""Schema migrations on SQLite and a real PostgreSQL: a new database is created at the
newest revision, the previous release's database (written by that release's own code,
tests/fixtures/previous_release.py) is upgraded and read back, an older revision is
upgraded only when allowed, a newer one is refused, and the migrations build exactly the
tables the code defines."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url

from hubgate.hub_service import schema
from hubgate.hub_service import store as store_module
from hubgate.hub_service.model import ClusterStatus, WorkerStatus
from hubgate.hub_service.schema import (
    BASELINE,
    VERSION_TABLE,
    SchemaError,
    alembic_config,
    head_revision,
)
from hubgate.hub_service.secrets import SecretBox
from hubgate.hub_service.store import ClusterStore, metadata
from tests.fixtures.previous_release import PreviousRelease

WRITER = Path(__file__).resolve().parents[1] / "fixtures" / "write_previous_release_db.py"
KEY = Fernet.generate_key()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'hubgate.sqlite'}"
    return str(request.getfixturevalue("postgres_db_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    if db_url.startswith("sqlite:"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(exist_ok=True)
    made = create_engine(db_url)
    yield made
    made.dispose()


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _differences(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


async def _open(url: str, upgrade_db: bool | None = None) -> ClusterStore:
    store = ClusterStore(url, SecretBox([KEY]), upgrade_db=upgrade_db)
    try:
        await store.open()
    except BaseException:
        await store.close()
        raise
    return store


def _write_with_previous_release(release: PreviousRelease, url: str) -> dict[str, Any]:
    """The previous release's own store writes a cluster and a uid into ``url``."""
    done = subprocess.run(
        [sys.executable, str(WRITER), url, KEY.decode()],
        env=release.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written: dict[str, Any] = json.loads(done.stdout)
    # really that release's code, not the checkout's
    assert written["store_module"].startswith(str(release.site)), written["store_module"]
    return written


async def test_a_new_database_is_created_at_the_newest_revision(
    db_url: str, engine: Engine
) -> None:
    store = await _open(db_url)
    await store.close()
    assert _revision(engine) == head_revision()
    assert _tables(engine) == {VERSION_TABLE, *metadata.tables}
    assert _differences(engine) == []


def test_the_migrations_make_the_tables_the_code_defines(engine: Engine) -> None:
    """Fails when hub_service/store.py's tables change without a revision: add one to
    hub_service/migrations/versions/ (down_revision = the newest one)."""
    for target in ("head", "base", "head"):  # and every downgrade undoes its upgrade
        with engine.begin() as conn:
            config = alembic_config(conn)
            if target == "head":
                command.upgrade(config, target)
            else:
                command.downgrade(config, target)
        if target == "base":
            assert _tables(engine) <= {VERSION_TABLE}
    assert _differences(engine) == []
    assert _revision(engine) == head_revision()


async def test_the_previous_releases_database_is_upgraded_and_read_back(
    db_url: str, engine: Engine, previous_release: PreviousRelease
) -> None:
    written = _write_with_previous_release(previous_release, db_url)
    assert VERSION_TABLE not in _tables(engine)  # that release had no schema version

    if engine.dialect.name == "sqlite":
        store = await _open(db_url)  # upgraded at start by default, after a copy
        [backup] = Path(engine.url.database or "").parent.glob("hubgate.sqlite.*.bak")
        assert backup.stat().st_mode & 0o777 == 0o600
        with sqlite3.connect(backup) as copy:
            tables = {r[0] for r in copy.execute("SELECT name FROM sqlite_master")}
            names = [r[0] for r in copy.execute("SELECT name FROM clusters")]
        copy.close()
        assert VERSION_TABLE not in tables and names == [written["name"]]
    else:
        with pytest.raises(SchemaError, match="run `hubgate upgrade-db`"):
            await _open(db_url)  # PostgreSQL: only when the operator says so
        assert VERSION_TABLE not in _tables(engine)  # untouched
        store = await _open(db_url, upgrade_db=True)
    try:
        assert _revision(engine) == head_revision()
        assert _differences(engine) == []
        [cluster] = await store.load_all()
        assert await store.uid_for("alice", 70000, 70009) == written["uid"]
        assert await store.uid_for("bob", 70000, 70009) != written["uid"]
    finally:
        await store.close()

    assert cluster.name == written["name"] and cluster.username == "alice"
    # named by the migration that added display names (5d1e0a7c2b94)
    assert cluster.display_name == "cluster-" + written["name"][:8]
    assert cluster.status is ClusterStatus.RUNNING
    assert cluster.token == "the-cluster-token"
    assert cluster.dashboard_secret == "the-dashboard-secret"
    assert cluster.credentials.to_json() == written["credentials"]
    assert (cluster.config.worker_cores, cluster.config.worker_memory) == (2, 4 * 2**30)
    assert cluster.options == {"worker_cores": 2}
    assert cluster.scheduler_state == {"pid": 4242, "host": "node1"}
    assert cluster.scheduler_address == "tls://10.0.0.1:8786"
    assert (cluster.adaptive.active, cluster.adaptive.minimum, cluster.adaptive.maximum) == (
        True,
        1,
        3,
    )
    assert (cluster.requested_workers, cluster.worker_counter) == (1, 2)
    assert [list(e) for e in cluster.events] == written["events"]
    workers = {w.name: w for w in cluster.workers.values()}
    assert workers["w-1"].status is WorkerStatus.RUNNING and workers["w-1"].state == {"pid": 4243}
    assert workers["w-2"].status is WorkerStatus.STOPPED
    assert workers["w-2"].reason == "scaled down"


async def test_an_older_revision_is_upgraded_only_when_allowed(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), BASELINE)
    with pytest.raises(SchemaError) as refused:
        await _open(db_url, upgrade_db=False)
    assert f"revision {BASELINE}" in str(refused.value)
    assert f"needs revision {head_revision()}" in str(refused.value)
    assert _revision(engine) == BASELINE

    store = await _open(db_url, upgrade_db=True)
    await store.close()
    assert _revision(engine) == head_revision()
    assert _differences(engine) == []


FAILING_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0badc0ffee00"
down_revision = {head!r}


def upgrade():
    op.add_column("clusters", sa.Column("half_done", sa.Integer))
    raise RuntimeError("this migration fails half way")
"""


async def test_a_migration_that_fails_changes_nothing(
    db_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All of an upgrade is one transaction, on SQLite too (where pysqlite would commit
    the added column on its own)."""
    store = await _open(db_url)
    await store.close()
    head = head_revision()
    migrations = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "0badc0ffee00_fails.py").write_text(
        FAILING_REVISION.format(head=head)
    )
    monkeypatch.setattr(schema, "MIGRATIONS", migrations)
    with pytest.raises(RuntimeError, match="fails half way"):
        await _open(db_url, upgrade_db=True)
    columns = {c["name"] for c in inspect(engine).get_columns("clusters")}
    assert "half_done" not in columns
    assert _revision(engine) == head


RECREATING_REVISION = """
from alembic import op

revision = "0c0pyc1u5735"
down_revision = {head!r}


def upgrade():
    with op.batch_alter_table("clusters", recreate="always"):
        pass
"""


async def test_a_migration_that_copies_the_clusters_table_keeps_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, previous_release: PreviousRelease
) -> None:
    """SQLite alters tables by copying them: dropping the old clusters table must not
    cascade to the workers (the store turns foreign keys on for every connection)."""
    url = f"sqlite:///{tmp_path / 'hubgate.sqlite'}"
    _write_with_previous_release(previous_release, url)
    store = await _open(url)
    await store.close()
    migrations = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "0c0pyc1u5735_copy.py").write_text(
        RECREATING_REVISION.format(head=head_revision())
    )
    monkeypatch.setattr(schema, "MIGRATIONS", migrations)
    store = await _open(url)
    try:
        [cluster] = await store.load_all()
    finally:
        await store.close()
    assert sorted(cluster.workers) == ["w-1", "w-2"]


async def test_a_database_of_a_newer_release_is_refused(db_url: str, engine: Engine) -> None:
    store = await _open(db_url)
    await store.close()
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'feedfacecafe'"))
    with pytest.raises(SchemaError, match="feedfacecafe.*a newer hubgate wrote it"):
        await _open(db_url, upgrade_db=True)
    assert _revision(engine) == "feedfacecafe"


async def test_tables_of_no_hubgate_release_are_refused(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE clusters (name VARCHAR(64) PRIMARY KEY, owner TEXT)"))
    with pytest.raises(SchemaError, match=r"not those of any hubgate release.*\['owner'\]"):
        await _open(db_url, upgrade_db=True)
    assert _tables(engine) == {"clusters"}


async def test_the_schema_is_prepared_in_the_stores_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    prepare = store_module.prepare_schema

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return prepare(*args, **kwargs)

    monkeypatch.setattr(store_module, "prepare_schema", recording)
    store = await _open(f"sqlite:///{tmp_path / 'hubgate.sqlite'}")
    await store.close()
    assert len(threads) == 1 and threads[0].startswith("hubgate-db")


def _hubgate(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "hubgate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_upgrade_db_command_upgrades_a_copied_sqlite_file(
    tmp_path: Path, previous_release: PreviousRelease
) -> None:
    database = tmp_path / "hubgate.sqlite"
    url = f"sqlite:///{database}"
    config = tmp_path / "hubgate_config.py"
    config.write_text(f"c.HubgateService.db_url = {url!r}\n")
    missing = _hubgate("upgrade-db", "--config", str(config), cwd=tmp_path)
    assert missing.returncode == 1 and "there is no database" in missing.stderr
    assert not database.exists()

    written = _write_with_previous_release(previous_release, url)
    done = _hubgate("upgrade-db", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"from schema revision {BASELINE} to {head_revision()}" in done.stdout
    [backup] = tmp_path.glob("hubgate.sqlite.*.bak")
    assert f"The database before the upgrade: {backup}" in done.stdout
    engine = create_engine(url)
    try:
        assert _revision(engine) == head_revision()
        with engine.connect() as conn:
            names = conn.execute(text("SELECT name FROM clusters")).scalars().all()
        assert names == [written["name"]]
    finally:
        engine.dispose()

    again = _hubgate("upgrade-db", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 0 and "already" in again.stdout, again.stderr
    assert len(list(tmp_path.glob("hubgate.sqlite.*.bak"))) == 1  # nothing to copy


def test_upgrade_db_command_says_why_it_cannot(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = _hubgate(
        "upgrade-db",
        "--db-url",
        f"postgresql+psycopg://hubgate:s3cret@127.0.0.1:{port}/x",
        cwd=tmp_path,
    )
    assert unreachable.returncode == 1
    assert f"cannot use postgresql+psycopg://hubgate:***@127.0.0.1:{port}/x" in unreachable.stderr
    assert "s3cret" not in unreachable.stderr + unreachable.stdout

    url = f"sqlite:///{tmp_path / 'hubgate.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'feedfacecafe'"))
    finally:
        engine.dispose()
    newer = _hubgate("upgrade-db", "--db-url", url, cwd=tmp_path)
    assert newer.returncode == 1 and "a newer hubgate wrote it" in newer.stderr


def test_the_service_stops_at_start_on_a_schema_it_must_not_upgrade(
    tmp_path: Path, postgres_db_url: str
) -> None:
    engine = create_engine(postgres_db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), BASELINE)
    finally:
        engine.dispose()
    config = tmp_path / "hubgate_config.py"
    config.write_text(
        f"c.HubgateService.db_url = {postgres_db_url!r}\n"
        f"c.HubgateService.data_dir = {str(tmp_path / 'data')!r}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    service = _hubgate("service", "--config", str(config), cwd=tmp_path, env=env)
    assert service.returncode == 1
    assert "The database cannot be used" in service.stderr
    assert "run `hubgate upgrade-db`" in service.stderr
    password = make_url(postgres_db_url).password
    assert password and password not in service.stderr
