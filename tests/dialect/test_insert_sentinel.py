"""Bulk INSERT ... RETURNING never relies on CockroachDB returning rows in order.

SQLAlchemy's "insertmanyvalues" matches RETURNING rows to parameter sets. With
an implicit sentinel it sorts them by a server-generated key, which is only
right where keys are generated in the order of the VALUES (PostgreSQL with
``INSERT ... SELECT ... ORDER BY``). CockroachDB makes no such promise, so the
dialect turns the implicit sentinel off there (base.py); the compile tests use
a recorded CockroachDB ``version()`` answer (tests/crdb_facts/version.json).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
from sqlalchemy_crdb_async.dialect.server import parse_server_version

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

V25 = (
    "CockroachDB CCL v25.2.1 (x86_64-pc-linux-gnu, built 2025/06/02 23:17:23, "
    "go1.23.7 X:nocoverageredesign)"
)
meta = sa.MetaData()
serial = sa.Table(
    "imv_serial",
    meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("n", sa.Integer),
)
client_key = sa.Table(
    "imv_client_key",
    meta,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("n", sa.Integer),
)


def _dialect(version: str, server_version: str) -> Any:
    dialect = CockroachDBDialect_asyncpg()
    dialect.server_info = parse_server_version(version, server_version)
    return dialect


def _imv(table: sa.Table, dialect: Any) -> Any:
    stmt = table.insert().returning(table.c.id, sort_by_parameter_order=True)
    compiled = stmt.compile(dialect=dialect, column_keys=["n"], for_executemany=True)
    return compiled._insertmanyvalues


def test_no_implicit_sentinel_on_cockroachdb() -> None:
    crdb = _dialect(V25, "13.0.0")
    pg = _dialect("PostgreSQL 15.18 on x86_64-pc-linux-gnu", "15.18")
    # PostgreSQL: the SERIAL key is the sentinel, rows sorted by it
    assert _imv(serial, pg).implicit_sentinel is True
    # CockroachDB: no sentinel to sort by: SQLAlchemy inserts row by row
    # when the order matters
    assert _imv(serial, crdb).num_sentinel_columns == 0
    # a client-side key still matches rows by value, on both
    for dialect in (crdb, pg):
        imv = _imv(client_key, dialect)
        assert imv.num_sentinel_columns == 1
        assert imv.implicit_sentinel is False


@pytest.fixture
async def tables(engine: AsyncEngine) -> Any:
    async with engine.begin() as conn:
        await conn.run_sync(meta.drop_all)
        await conn.run_sync(meta.create_all)
    yield engine
    async with engine.begin() as conn:
        await conn.run_sync(meta.drop_all)


@pytest.mark.parametrize("table", [serial, client_key], ids=lambda t: t.name)
async def test_returning_rows_follow_the_parameters(
    tables: AsyncEngine, table: sa.Table
) -> None:
    values = [{"n": n} for n in (5, 3, 9, 1, 7)]
    stmt = table.insert().returning(table.c.n, sort_by_parameter_order=True)
    async with tables.begin() as conn:
        rows = (await conn.execute(stmt, values)).all()
    assert [r.n for r in rows] == [5, 3, 9, 1, 7]
