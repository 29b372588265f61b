"""The shared PostgreSQL fixtures start a real server that SQLAlchemy can use."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine


def test_postgres_url_is_a_real_server(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            version = conn.execute(sa.text("SELECT version()")).scalar_one()
            conn.execute(
                sa.text("CREATE TABLE IF NOT EXISTS probe (id serial PRIMARY KEY, v text)")
            )
            conn.execute(sa.text("INSERT INTO probe (v) VALUES ('hello')"))
        with engine.connect() as conn:
            values = conn.execute(sa.text("SELECT v FROM probe")).scalars().all()
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL ")
    assert "hello" in values


def test_each_test_gets_an_empty_database(postgres_db_url: str, postgres_url: str) -> None:
    assert postgres_db_url != postgres_url
    engine = sa.create_engine(postgres_db_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        metadata = sa.MetaData()
        sa.Table("clusters", metadata, sa.Column("name", sa.Text, primary_key=True))
        metadata.create_all(engine)
        assert sa.inspect(engine).get_table_names() == ["clusters"]
    finally:
        engine.dispose()


async def test_async_engine_works_with_the_url(postgres_db_url: str) -> None:
    engine = create_async_engine(postgres_db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (n int)"))
            await conn.execute(sa.text("INSERT INTO t VALUES (1), (2), (3)"))
            total = (await conn.execute(sa.text("SELECT sum(n) FROM t"))).scalar_one()
    finally:
        await engine.dispose()
    assert total == 6
