"""Pool checkout: a connection out and back in, nothing run on it.

The cost of the pool itself: raw asyncpg ``Pool.acquire()``/``release`` (its
release sends a reset query; the ``-noreset`` variant skips it), and
``await engine.connect()`` then ``await conn.close()`` for each SQLAlchemy
variant. ``ours-pool``'s return resets the session (one round trip; stock
SQLAlchemy sends nothing when no transaction was opened) and pings a
connection idle longer than ``idle_before_ping_s`` (never, in a busy cell).
Was ``python -m benchmarks.pool_checkout``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import Ctx, Workload

if TYPE_CHECKING:
    import asyncpg


async def _setup(conn: asyncpg.Connection) -> None:
    """Nothing to create: no statement runs."""


workload = Workload("pool_checkout", __doc__, setup=_setup)


async def _raw(ctx: Ctx) -> None:
    async with ctx.pool.acquire():
        pass


@workload.scenario("asyncpg", "acquire", reference=True)
async def asyncpg_checkout(ctx: Ctx) -> None:
    """asyncpg Pool.acquire()/release (with its reset)"""
    await _raw(ctx)


@workload.scenario("asyncpg-noreset", "acquire")
async def asyncpg_noreset_checkout(ctx: Ctx) -> None:
    """asyncpg Pool.acquire()/release, pool reset disabled"""
    await _raw(ctx)


async def _sqlalchemy(ctx: Ctx) -> None:
    """engine.connect() then close()"""
    conn = await ctx.engine.connect()
    await conn.close()


for _variant in ("sqlalchemy", "sqlalchemy-cockroachdb", "ours", "ours-pool"):
    workload.scenario(_variant, "connect")(_sqlalchemy)
