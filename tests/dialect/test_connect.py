"""Every URL scheme connects, runs DDL, inserts and selects; detection is right."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from sqlalchemy_crdb_async.testing import TestServer

metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("body", sa.String(100), nullable=False),
    sa.Column("attrs", sa.JSON),
)


def with_scheme(url: URL, scheme: str) -> URL:
    return url.set(drivername=scheme)


@pytest.mark.parametrize(
    ("scheme", "driver"),
    [
        ("cockroachdb+asyncpg", "asyncpg"),
        ("cockroachdb+psycopg", "psycopg_async"),
        ("cockroachdb+psycopg_async", "psycopg_async"),
        ("cockroachdb", "asyncpg"),
    ],
)
async def test_async_engine_round_trip(crdb_url: URL, scheme: str, driver: str) -> None:
    engine = create_async_engine(with_scheme(crdb_url, scheme))
    table = f"notes_{driver}_{scheme.replace('+', '_')}"
    t = notes.to_metadata(sa.MetaData(), name=table)
    try:
        assert engine.dialect.driver == driver
        async with engine.begin() as conn:
            await conn.run_sync(t.metadata.create_all)
            await conn.execute(
                t.insert(),
                [
                    {"id": 1, "body": "first", "attrs": {"tags": ["a", "b"]}},
                    {"id": 2, "body": "second", "attrs": None},
                ],
            )
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(t).order_by(t.c.id))).all()
            assert [tuple(r) for r in rows] == [
                (1, "first", {"tags": ["a", "b"]}),
                (2, "second", None),
            ]
        async with engine.begin() as conn:
            await conn.run_sync(t.metadata.drop_all)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("scheme", "driver"),
    [
        ("cockroachdb+psycopg", "psycopg"),
        ("cockroachdb+psycopg2", "psycopg2"),
        ("cockroachdb", "psycopg2"),
    ],
)
def test_sync_engine_round_trip(crdb_url: URL, scheme: str, driver: str) -> None:
    engine = sa.create_engine(with_scheme(crdb_url, scheme))
    t = notes.to_metadata(sa.MetaData(), name=f"notes_sync_{driver}_{len(scheme)}")
    try:
        assert engine.dialect.driver == driver
        with engine.begin() as conn:
            t.metadata.create_all(conn)
            conn.execute(t.insert(), {"id": 7, "body": "sync", "attrs": {"n": 1}})
        with engine.connect() as conn:
            row = conn.execute(sa.select(t)).one()
            assert tuple(row) == (7, "sync", {"n": 1})
        with engine.begin() as conn:
            t.metadata.drop_all(conn)
    finally:
        engine.dispose()


async def _raw_facts(url: URL) -> tuple[bool, str, int]:
    """What the server says, read without our parser: the crdb_version startup
    parameter (sent only by CockroachDB), version(), server_version_num."""
    import asyncpg

    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        announces_crdb = hasattr(conn.get_settings(), "crdb_version")
        version = await conn.fetchval("SELECT version()")
        num = int(await conn.fetchval("SELECT current_setting('server_version_num')"))
        return announces_crdb, version, num
    finally:
        await conn.close()


@pytest.mark.parametrize("scheme", ["cockroachdb+asyncpg", "cockroachdb+psycopg"])
async def test_server_detection(crdb_url: URL, scheme: str) -> None:
    announces_crdb, version, num = await _raw_facts(crdb_url)
    engine = create_async_engine(with_scheme(crdb_url, scheme))
    try:
        assert engine.dialect.server_flavor is None  # nothing asked yet
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        dialect = engine.dialect
        assert dialect.server_info.version_string == version
        if announces_crdb:
            assert dialect.server_flavor == "cockroachdb"
            assert dialect.is_cockroachdb
            assert dialect.crdb_version is not None
            assert f"v{'.'.join(map(str, dialect.crdb_version))}" in version
            assert dialect.server_version_info == (num // 10000, num // 100 % 100, 0)
        else:
            assert dialect.server_flavor == "postgresql"
            assert not dialect.is_cockroachdb
            assert dialect.crdb_version is None
            assert not dialect.crdb_at_least(1)
            # PostgreSQL 10+: server_version_num is major * 10000 + minor.
            assert dialect.server_version_info == (num // 10000, num % 10000)
    finally:
        await engine.dispose()


def test_provider_reports_the_same_server(crdb_server: TestServer) -> None:
    info = crdb_server.info
    assert crdb_server.describe().startswith(info.describe())
    if crdb_server.embedded is not None:
        assert info.flavor == "postgresql"
        pg_version = ".".join(map(str, info.pg_version))
        assert f"(PostgreSQL) {pg_version}" in crdb_server.embedded.version()


async def test_embedded_server_defaults_to_serializable(engine) -> None:
    async with engine.connect() as conn:
        level = (await conn.execute(sa.text("SHOW transaction_isolation"))).scalar()
    assert level == "serializable"
