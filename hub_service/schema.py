"""The database schema's version: create, recognise, upgrade, or refuse to run on it.

The schema is versioned with alembic; the migrations ship in ``migrations/`` beside
this module and run with the store's own engine, with no ``alembic.ini``. At start the
service calls :func:`prepare_schema`:

- an empty database gets the current tables and is stamped with the newest revision;
- a database written before migrations existed (hubgate up to commit f119d28: tables,
  no version table) is recognised by its columns and treated as the baseline revision;
- an older revision is upgraded when allowed (``upgrade``), else the service stops with
  a message that says to run ``hubgate upgrade-db``;
- a revision this hubgate does not know (written by a newer release) is refused.

Every step that changes the database runs in one transaction (on SQLite too, where
pysqlite would otherwise commit each DDL statement on its own).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, func, inspect, select
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
# PostgreSQL advisory lock key held while the schema changes (any fixed number).
MIGRATION_LOCK = 0x68756267617465
# The revision that describes hubgate's schema before migrations existed.
BASELINE = "8c7ca65e6bda"
# What those releases created (``metadata.create_all``, no version table): a database
# with exactly these tables and columns is at BASELINE.
UNVERSIONED_SCHEMA: dict[str, frozenset[str]] = {
    "clusters": frozenset(
        "name username status reason options config secrets created started stopped "
        "scheduler_state scheduler_address dashboard_address requested_workers "
        "adaptive_active adaptive_minimum adaptive_maximum lease_expires worker_counter "
        "events versions".split()
    ),
    "workers": frozenset("cluster_name name status state created stopped reason".split()),
    "user_uids": frozenset("username uid created".split()),
}


class SchemaError(Exception):
    """This hubgate cannot run on the database's schema; the text says what to do."""


@dataclass(frozen=True)
class SchemaUpgrade:
    """What :func:`prepare_schema` did."""

    before: str | None  # None: the database was empty
    after: str
    backup: Path | None = None  # the copy of a SQLite file taken first

    @property
    def changed(self) -> bool:
        return self.before != self.after


def scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def head_revision() -> str:
    head = scripts().get_current_head()
    if head is None:  # the migrations folder is missing from the installation
        raise SchemaError(f"hubgate's migrations are missing from {MIGRATIONS}")
    return head


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def current_revision(connection: Connection) -> str | None:
    """The database's revision: from its version table, BASELINE for a database of the
    releases before migrations, None for an empty one. SchemaError for anything else."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables:
        heads = MigrationContext.configure(connection).get_current_heads()
        if len(heads) != 1:
            raise SchemaError(
                f"The database's {VERSION_TABLE} table holds {len(heads)} revisions "
                f"({', '.join(heads) or 'none'}); hubgate writes exactly one. Restore "
                "the database from a backup."
            )
        return heads[0]
    ours = tables & set(UNVERSIONED_SCHEMA)
    if not ours:
        return None
    problems = []
    for table, expected in UNVERSIONED_SCHEMA.items():
        if table not in tables:
            problems.append(f"table {table} is missing")
            continue
        found = {c["name"] for c in inspect(connection).get_columns(table)}
        if found != expected:
            missing, extra = sorted(expected - found), sorted(found - expected)
            problems.append(f"table {table} has extra columns {extra}, lacks {missing}")
    if problems:
        raise SchemaError(
            "The database has hubgate's tables but no schema version, and they are not "
            f"those of any hubgate release ({'; '.join(problems)}). Point db_url at "
            "hubgate's own database, or restore it from a backup."
        )
    return BASELINE


def prepare_schema(
    engine: Engine, metadata: MetaData, *, upgrade: bool, backup_dir: Path | None = None
) -> SchemaUpgrade:
    """Make the database ready for this hubgate (see the module's text). ``metadata``:
    the current tables (what an empty database gets); ``upgrade``: may an older schema
    be upgraded now; ``backup_dir``: where a SQLite file is copied first (else beside
    it). Blocking: run it in the store's thread."""
    head = head_revision()
    with engine.connect() as connection:
        before = current_revision(connection)
    if before is None:
        with _migration_transaction(engine) as connection:
            # Another service may have created it since we looked: look again, locked.
            before = current_revision(connection)
            if before is None:
                metadata.create_all(connection)
                command.stamp(alembic_config(connection), head)
                log.info("Created the database's tables at schema revision %s", head)
                return SchemaUpgrade(before=None, after=head)
    _refuse_unknown(before)
    if before == head:
        return SchemaUpgrade(before=before, after=head)
    if not upgrade:
        raise SchemaError(
            f"The database {_shown(engine)} has {_describe(before)}; this hubgate needs "
            f"revision {head}. Back it up, then run `hubgate upgrade-db` with this "
            "service's configuration (or set HubgateService.upgrade_db = True to upgrade "
            "at start)."
        )
    backup = backup_sqlite(engine, backup_dir)
    with _migration_transaction(engine) as connection:
        before = current_revision(connection)  # again, locked
        _refuse_unknown(before)
        config = alembic_config(connection)
        if VERSION_TABLE not in inspect(connection).get_table_names():
            command.stamp(config, BASELINE)
        command.upgrade(config, head)
    log.warning(
        "Upgraded the database's schema from %s to revision %s%s",
        _describe(before or BASELINE),
        head,
        f"; the database before the upgrade is in {backup}" if backup else "",
    )
    return SchemaUpgrade(before=before, after=head, backup=backup)


def _refuse_unknown(revision: str | None) -> None:
    if revision is None:
        return
    if revision not in {script.revision for script in scripts().walk_revisions()}:
        raise SchemaError(
            f"The database has schema revision {revision}, which this hubgate does not "
            "know: a newer hubgate wrote it. Run that release (or newer), or restore the "
            "backup taken before it upgraded the database."
        )


def backup_sqlite(engine: Engine, folder: Path | None = None) -> Path | None:
    """A consistent copy of a SQLite database file (WAL included), mode 0600, named
    ``<file>.<time>.bak``; None for other databases."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    source = Path(database)
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    for attempt in range(100):
        suffix = f"-{attempt}" if attempt else ""
        target = (folder or source.parent) / f"{source.name}.{stamp}{suffix}.bak"
        try:
            # O_EXCL: never overwrite an earlier copy. 0600: the database holds
            # encrypted secrets, and the copy is nobody else's business either.
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            break
        except FileExistsError:
            continue
    else:
        raise SchemaError(f"cannot name a copy of {source}: too many copies made at {stamp}")
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        copy = sqlite3.connect(target)
        try:
            driver.backup(copy)
        finally:
            copy.close()
    return target


@contextmanager
def _migration_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction, committed at the end. pysqlite begins
    transactions only before data changes, so on SQLite it is begun here, with foreign
    keys off while tables are copied (else dropping the old clusters table would cascade
    to the workers) and checked before the commit."""
    with engine.connect() as connection:
        if engine.dialect.name != "sqlite":
            with connection.begin():
                if engine.dialect.name == "postgresql":
                    # one upgrader at a time (until the commit), e.g. two services at start
                    connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
                yield connection
            return
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        saved = driver.isolation_level
        driver.isolation_level = None  # we say when transactions begin and end
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # locks out other writers now
            try:
                yield connection
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise SchemaError(f"the migration broke foreign keys: {broken[:5]}")
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            driver.isolation_level = saved


def _describe(revision: str) -> str:
    if revision == BASELINE:
        return f"schema revision {revision} (hubgate's first)"
    return f"schema revision {revision}"


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
