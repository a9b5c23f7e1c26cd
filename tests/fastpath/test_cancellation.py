"""A fast-path statement cancelled at any await leaves nothing behind.

(Where exactly a given turn count lands depends on the machine: the sweep
asserts what must hold wherever it lands; the running-statement test below
cancels at a known point, mid-statement.)

The sweep cancels one read after 0, 1, 2, ... turns of the event loop, so the
cancellation lands in turn at every await of the operation (checkout,
connect, prepare, the statement, the return), with an anyio cancel scope (as
FastAPI cancels, re-delivered at every turn) on asyncio and uvloop, and with
``task.cancel()`` (delivered once). After every cancellation nothing is
checked out; at the end no server session of the app is idle in a
transaction or still running a statement, and the engine still reads.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlalchemy_crdb_async import prepared
from tests.cancelling import BACKENDS, AppEngine, backends, run, until

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.engine import URL

#: Turns of the event loop to sweep over: a warm read's checkout and
#: statement; the last ones usually let it finish.
TURNS = 80

ct = sa.Table(
    "fp_cancel",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("v", sa.Integer),
)
READ = prepared(sa.select(ct).where(ct.c.id == sa.bindparam("id")))
SLOW = prepared(sa.select(sa.func.pg_sleep(sa.bindparam("s", type_=sa.Float))))


async def _table(e: AppEngine) -> None:
    async with e.admin.begin() as conn:
        await conn.run_sync(ct.metadata.drop_all)
        await conn.run_sync(ct.metadata.create_all)
        await conn.execute(ct.insert(), [{"id": 1, "v": 10}])


async def _cancel_after(turns: int, body: Callable[[], Awaitable[Any]]) -> bool:
    """Run ``body``, cancelling its scope after ``turns`` turns of the loop;
    whether it finished first."""
    finished = False
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel() -> None:
                for _ in range(turns):
                    await anyio.lowlevel.checkpoint()
                scope.cancel()

            tg.start_soon(cancel)
            await body()
            finished = True
            scope.cancel()
    return finished


async def _task_cancel_after(turns: int, body: Callable[[], Awaitable[Any]]) -> bool:
    task = asyncio.ensure_future(body())
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return False
    return True


async def _nothing_left(e: AppEngine, pool: Any) -> None:
    assert pool.checkedout() == 0

    async def settled() -> bool:
        return (
            await backends(
                e.admin,
                e.app,
                "(state LIKE 'idle in transaction%' OR state = 'active')",
            )
            == 0
        )

    await until(settled, "no session of the app in a transaction or a statement")
    row = await READ.one(e.engine, id=1)
    assert row.v == 10


def _default_pool(e: AppEngine) -> None:
    """Swap the AppEngine's CockroachPool engine for one on the default pool."""
    url = e.engine.url
    e.engine = create_async_engine(url, pool_size=1, max_overflow=0)


@pytest.mark.parametrize("pool", ["PoolSettings", "default pool"])
@pytest.mark.parametrize("mechanism", ["cancel scope", "task.cancel"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_engine_read_cancelled_at_any_await(
    crdb_url: URL, backend: dict[str, Any], mechanism: str, pool: str
) -> None:
    async def main() -> None:
        e = AppEngine(crdb_url, pool_size=1, idle_before_ping_s=None)
        if pool == "default pool":
            await e.engine.dispose()
            _default_pool(e)
        try:
            await _table(e)
            cancel = (
                _cancel_after if mechanism == "cancel scope" else _task_cancel_after
            )
            engine: AsyncEngine = e.engine
            await cancel(3, lambda: READ.one(engine, id=1))  # while connecting
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            for turns in range(TURNS):
                # warm (connection open, statement prepared), so each turn
                # count lands at a later point of one and the same read
                await READ.one(engine, id=1)
                await cancel(turns, lambda: READ.one(engine, id=1))
                assert engine.pool.checkedout() == 0, turns  # type: ignore[attr-defined]
            await _nothing_left(e, engine.pool)
        finally:
            await e.close()

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_running_statement_cancelled_ends_its_server_session(
    crdb_url: URL, backend: dict[str, Any]
) -> None:
    async def main() -> None:
        e = AppEngine(crdb_url, pool_size=1, idle_before_ping_s=None)
        try:
            await _table(e)

            async def sleeping() -> bool:
                return (
                    await backends(
                        e.admin, e.app, "state = 'active' AND query LIKE '%pg_sleep%'"
                    )
                    == 1
                )

            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:

                    async def watch() -> None:
                        await until(sleeping, "the statement to run on the server")
                        scope.cancel()

                    tg.start_soon(watch)
                    await SLOW.scalar(e.engine, s=1.0)
            assert scope.cancelled_caught
            await _nothing_left(e, e.pool)
        finally:
            await e.close()

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_connection_read_cancelled_at_any_await(
    crdb_url: URL, backend: dict[str, Any]
) -> None:
    async def main() -> None:
        e = AppEngine(crdb_url, pool_size=1, idle_before_ping_s=None)
        try:
            await _table(e)

            async def body() -> None:
                async with e.engine.connect() as conn:
                    await READ.one(conn, id=1)

            for turns in range(TURNS):
                await body()  # warm
                await _cancel_after(turns, body)
                assert e.pool.checkedout() == 0, turns
            await _nothing_left(e, e.pool)
        finally:
            await e.close()

    run(backend, main)
