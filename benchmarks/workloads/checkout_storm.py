"""Pool checkout storm: 10,000 tasks at once on a pool of 16 connections.

Every task checks a connection out, runs ``SELECT 1`` and gives it back; all
are started together, so all but 16 wait in the pool's queue. A task's latency
runs from the start of the storm to its end (queueing included); ops/s is
tasks per second of the storm's wall time. ``--concurrency`` does not apply:
the concurrency column shows the number of tasks (1,000 with ``--quick``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import Ctx, Workload

if TYPE_CHECKING:
    import asyncpg

POOL_SIZE = 16
TASKS = 10_000
QUICK_TASKS = 1_000


async def _setup(conn: asyncpg.Connection) -> None:
    """Nothing to create: the storm only runs SELECT 1."""


workload = Workload("checkout_storm", __doc__, setup=_setup, mode="storm")


async def _raw(ctx: Ctx) -> None:
    assert await ctx.pool.fetchval("SELECT 1") == 1


async def _sqlalchemy(ctx: Ctx) -> None:
    """engine.connect() + SELECT 1"""
    async with ctx.engine.connect() as conn:
        result = await conn.exec_driver_sql("SELECT 1")
        assert result.scalar() == 1


@workload.scenario("asyncpg", "Pool.fetchval", reference=True)
async def asyncpg_storm(ctx: Ctx) -> None:
    """asyncpg Pool.fetchval (acquire, SELECT 1, reset, release)"""
    await _raw(ctx)


@workload.scenario("asyncpg-noreset", "Pool.fetchval")
async def asyncpg_noreset_storm(ctx: Ctx) -> None:
    """asyncpg Pool.fetchval, pool reset disabled"""
    await _raw(ctx)


for _variant in ("sqlalchemy", "sqlalchemy-cockroachdb", "ours", "ours-pool"):
    workload.scenario(_variant, "connect")(_sqlalchemy)
