"""CockroachPool under load: many tasks on a small pool, and random cancellation."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlalchemy_crdb_async import PoolSettings, pool_stats
from tests.pool.support import plain_url, wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

TASKS = 10_000
POOL_SIZE = 16


@pytest.fixture
async def engine16(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    settings = PoolSettings(pool_size=POOL_SIZE, pool_timeout_s=120.0)
    eng = create_async_engine(crdb_url, **settings.engine_kwargs())
    try:
        yield eng
    finally:
        await eng.dispose()


async def sessions_idle_in_transaction(crdb_url: URL) -> int:
    conn = await asyncpg.connect(plain_url(crdb_url))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state LIKE 'idle in transaction%'"
            )
        )
    finally:
        await conn.close()


async def test_ten_thousand_tasks_on_sixteen_connections(engine16: AsyncEngine) -> None:
    async def work(i: int) -> int:
        async with engine16.connect() as conn:
            return int(
                (
                    await conn.execute(text("SELECT CAST(:i AS int)"), {"i": i})
                ).scalar_one()
            )

    results = await asyncio.gather(*(work(i) for i in range(TASKS)))
    assert results == list(range(TASKS))
    stats = pool_stats(engine16)
    assert stats["timeouts"] == 0
    assert stats["checkouts"] == TASKS
    assert stats["connections_opened"] <= POOL_SIZE
    assert stats["checked_out"] == 0
    assert stats["waiting"] == 0


@pytest.mark.parametrize(
    "idle_before_ping_s",
    [pytest.param(0.0, id="ping-every-checkout"), pytest.param(1.0, id="default")],
)
async def test_random_cancellation_leaks_nothing(
    crdb_url: URL, idle_before_ping_s: float
) -> None:
    settings = PoolSettings(
        pool_size=POOL_SIZE, pool_timeout_s=120.0, idle_before_ping_s=idle_before_ping_s
    )
    engine16 = create_async_engine(crdb_url, **settings.engine_kwargs())
    try:
        await _cancel_randomly(engine16, crdb_url)
    finally:
        await engine16.dispose()


async def _cancel_randomly(engine16: AsyncEngine, crdb_url: URL) -> None:
    async with engine16.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS hits (n int)"))
    rng = random.Random(5)

    async def work(kind: int) -> None:
        # Each kind parks the task at a different await when it is cancelled:
        # checkout, a statement inside a transaction, or the commit.
        async with engine16.connect() as conn:
            if kind == 0:
                await conn.execute(text("SELECT pg_sleep(0.002)"))
            else:
                await conn.execute(text("INSERT INTO hits VALUES (1)"))
                if kind == 2:
                    await conn.execute(text("SELECT pg_sleep(0.001)"))
                await conn.commit()

    async def cancel_later(task: asyncio.Task[Any], delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        task.cancel()

    tasks = [asyncio.create_task(work(i % 3)) for i in range(TASKS)]
    cancellers = [
        asyncio.create_task(cancel_later(t, rng.uniform(0, 0.5)))
        for t in tasks
        if rng.random() < 0.5
    ]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*cancellers)
    cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert errors == []
    assert cancelled > 0

    async def all_returned() -> bool:
        return pool_stats(engine16)["checked_out"] == 0

    # Cleanup of a cancelled task runs shielded; let it finish.
    await wait_for(all_returned, "every connection to be returned")

    async def none_idle_in_transaction() -> bool:
        return await sessions_idle_in_transaction(crdb_url) == 0

    # A connection terminated on cancellation stays 'idle in transaction'
    # on the server until its backend reads the closed socket.
    await wait_for(none_idle_in_transaction, "no session idle in a transaction")
    stats = pool_stats(engine16)
    assert stats["checked_out"] == 0
    assert stats["waiting"] == 0
    assert stats["connections"] <= POOL_SIZE
    # the pool still works
    async with engine16.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
