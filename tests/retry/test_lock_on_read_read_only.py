"""Lock on read stays out of read-only transactions.

Both servers refuse a locking read in a read-only transaction (25006 "cannot
execute SELECT FOR UPDATE in a read-only transaction";
tests/crdb_facts/errors_batch3.json ``25006_read_only``), so
``retrying_session(lock_on_read=True)`` must not add ``FOR UPDATE`` there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker

from sqlalchemy_crdb_async import (
    as_of_system_time,
    retrying_session,
    set_transaction_as_of_system_time,
)
from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
from sqlalchemy_crdb_async.dialect.server import parse_server_version
from sqlalchemy_crdb_async.retry._lock_on_read import lockable_tables, makes_read_only

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.ext.asyncio import AsyncEngine

V25 = (
    "CockroachDB CCL v25.2.1 (x86_64-pc-linux-gnu, built 2025/06/02 23:17:23, "
    "go1.23.7 X:nocoverageredesign)"
)
metadata = sa.MetaData()
kv = sa.Table(
    "kv",
    metadata,
    sa.Column("k", sa.Integer, primary_key=True),
    sa.Column("v", sa.Integer),
)


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v int NOT NULL)"
        )
        await conn.exec_driver_sql("DELETE FROM kv")
        await conn.exec_driver_sql("INSERT INTO kv VALUES (1, 10)")
    return engine


class Sent:
    """The statements an engine sends, as text."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[str] = []
        self.engine = engine.sync_engine

    def __call__(self, *args: Any) -> None:
        self.statements.append(args[2])

    @property
    def locking(self) -> list[str]:
        return [s for s in self.statements if "FOR UPDATE" in s.upper()]


@pytest.fixture
def sent(db: AsyncEngine) -> Iterator[Sent]:
    watcher = Sent(db)
    event.listen(db.sync_engine, "before_cursor_execute", watcher)
    yield watcher
    event.remove(db.sync_engine, "before_cursor_execute", watcher)


def _crdb() -> CockroachDBDialect_asyncpg:
    dialect = CockroachDBDialect_asyncpg()
    dialect.server_info = parse_server_version(V25, "13.0.0")
    return dialect


def test_set_transaction_as_of_system_time_makes_the_transaction_read_only() -> None:
    sql = str(set_transaction_as_of_system_time("-10s").compile(dialect=_crdb()))
    assert makes_read_only(sql)
    assert makes_read_only("SET TRANSACTION READ ONLY")
    assert makes_read_only("set transaction_read_only = on")
    assert not makes_read_only("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    assert not makes_read_only("SET transaction_read_only = off")


def test_an_as_of_system_time_select_is_not_locked() -> None:
    assert lockable_tables(sa.select(kv)) == [kv]
    assert lockable_tables(as_of_system_time(sa.select(kv), "-10s")) is None


async def test_no_lock_in_a_read_only_engine(db: AsyncEngine, sent: Sent) -> None:
    maker = async_sessionmaker(db.execution_options(postgresql_readonly=True))
    async with retrying_session(maker, lock_on_read=True) as session:
        rows = (await session.execute(sa.select(kv))).all()
    assert rows == [(1, 10)]
    assert sent.locking == []


async def test_no_lock_after_set_transaction_read_only(
    db: AsyncEngine, sent: Sent
) -> None:
    async with retrying_session(db, lock_on_read=True) as session:
        await session.execute(sa.text("SET TRANSACTION READ ONLY"))
        rows = (await session.execute(sa.select(kv))).all()
    assert rows == [(1, 10)]
    assert sent.locking == []


async def test_a_plain_read_is_still_locked(db: AsyncEngine, sent: Sent) -> None:
    async with retrying_session(db, lock_on_read=True) as session:
        await session.execute(sa.select(kv))
    assert len(sent.locking) == 1


@pytest.mark.crdb_only("SET TRANSACTION AS OF SYSTEM TIME")
async def test_no_lock_after_set_transaction_as_of_system_time(
    db: AsyncEngine, sent: Sent
) -> None:
    async with retrying_session(db, lock_on_read=True) as session:
        await session.execute(set_transaction_as_of_system_time("-1us"))
        await session.execute(sa.select(kv))
    assert sent.locking == []
