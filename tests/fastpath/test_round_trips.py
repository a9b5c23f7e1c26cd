"""A fast-path read through an engine is one round trip, counted on the wire.

No ``BEGIN``, no ``ROLLBACK``, no session reset on return: Bind, Execute and
Sync go out as one message and the answer comes back (FaultProxy counts the
client's turns). The first execution on a connection prepares the statement
(one turn more), so the count starts after warm-up, as in
tests/pool/test_round_trips.py. A statement that can leave session state
behind (an advisory lock) still gets the pool's reset; a write that leaves
none (pool/_statements.py) owes the read that follows it no reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlalchemy_crdb_async import PoolSettings, prepared
from sqlalchemy_crdb_async.testing import FaultProxy
from tests.pool.support import per_op

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

# no ping between operations, whatever the machine's load
SETTINGS = PoolSettings(pool_size=1, idle_before_ping_s=None)
POOLS = {"default pool": {}, "PoolSettings": SETTINGS.engine_kwargs()}

rt = sa.Table(
    "fp_rt",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("v", sa.Integer),
)
READ = prepared(sa.select(rt).where(rt.c.id == sa.bindparam("id")))
WRITE = prepared(rt.update().where(rt.c.id == sa.bindparam("id")).values(v=rt.c.v + 1))
LOCK = prepared(sa.select(sa.func.pg_try_advisory_lock(sa.bindparam("key"))))


@pytest.fixture
async def proxy(crdb_url: URL) -> AsyncIterator[FaultProxy]:
    assert crdb_url.port is not None
    eng = create_async_engine(crdb_url)
    async with eng.begin() as conn:
        await conn.run_sync(rt.metadata.drop_all)
        await conn.run_sync(rt.metadata.create_all)
        await conn.execute(rt.insert(), [{"id": 1, "v": 0}])
    await eng.dispose()
    async with FaultProxy("127.0.0.1", crdb_url.port) as p:
        yield p


@pytest.mark.parametrize("pool", list(POOLS))
async def test_an_engine_read_is_one_round_trip(
    proxy: FaultProxy, crdb_url: URL, pool: str
) -> None:
    async def read(eng: AsyncEngine) -> None:
        assert (await READ.one(eng, id=1)).id == 1

    assert await per_op(proxy, crdb_url, POOLS[pool], read) == 1


@pytest.mark.parametrize("pool", list(POOLS))
async def test_an_engine_write_is_one_round_trip(
    proxy: FaultProxy, crdb_url: URL, pool: str
) -> None:
    async def write(eng: AsyncEngine) -> None:
        assert await WRITE.execute(eng, id=1) == 1

    assert await per_op(proxy, crdb_url, POOLS[pool], write) == 1


@pytest.mark.parametrize("pool", list(POOLS))
async def test_a_read_after_a_harmless_ordinary_write_is_one_round_trip(
    proxy: FaultProxy, crdb_url: URL, pool: str
) -> None:
    # The UPDATE fires no default that could draw a sequence value
    # (pool/_statements.py), so its COMMIT leaves no reset owed for the read
    # to pay first: BEGIN, UPDATE, COMMIT, then the read alone.
    bump = rt.update().where(rt.c.id == 1).values(v=rt.c.v + 1)

    async def write_then_read(eng: AsyncEngine) -> None:
        async with eng.begin() as conn:
            await conn.execute(bump)
        assert (await READ.one(eng, id=1)).id == 1

    assert await per_op(proxy, crdb_url, POOLS[pool], write_then_read) == 3 + 1


async def test_a_statement_that_keeps_session_state_is_reset(
    proxy: FaultProxy, crdb_url: URL
) -> None:
    async def lock(eng: AsyncEngine) -> None:
        assert await LOCK.scalar(eng, key=4343) is True

    # the read, then the pool's reset (which releases the advisory lock, so
    # the next borrower can take it again)
    assert await per_op(proxy, crdb_url, SETTINGS.engine_kwargs(), lock) == 2


async def test_in_a_transaction_it_joins_the_transaction(
    proxy: FaultProxy, crdb_url: URL
) -> None:
    async def in_transaction(eng: AsyncEngine) -> None:
        async with eng.begin() as conn:
            await READ.one(conn, id=1)

    # BEGIN, the read, COMMIT: as connection.execute() in engine.begin()
    assert await per_op(proxy, crdb_url, {}, in_transaction) == 3
