"""``RetryPolicy.deadline_s`` bounds the whole call, entry to return.

On the real test server, for every async helper: a row lock held by another
connection, a ``pg_sleep`` statement, a ``FaultProxy`` gone silent, and (for
``retrying_session``) a block that waits on its own lock. Each call must end
with :class:`DeadlineExceededError` within ``deadline_s`` + 1 s of its entry
(the contract; nothing tighter is asserted), the lock holder then commits
normally, the waiting write never happened, and ``pg_stat_activity`` shows no
session of ours left (a bounded poll).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async import (
    DeadlineExceededError,
    RetriesExhaustedError,
    RetryPolicy,
    retry_stats,
    retrying_session,
)
from sqlalchemy_crdb_async.testing import FaultProxy
from tests.pool.support import wait_for
from tests.retry.support import ALL_HELPERS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from tests.retry.support import Runner

DEADLINE_S = 2.0
#: The contract under test: the call returns within deadline_s + 1 s.
BOUND_S = DEADLINE_S + 1.0
POLICY = RetryPolicy(deadline_s=DEADLINE_S, initial_backoff_s=0.001, max_backoff_s=0.01)
#: application_name of the helpers' connections, to find them in pg_stat_activity.
APP = "i19_deadline_helper"

metadata = MetaData()
kv = Table("kv", metadata, Column("k", Integer, primary_key=True), Column("v", Integer))


@pytest.fixture
async def helper_engine(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    """The engine the helper under test uses (named, to find its sessions)."""
    eng = create_async_engine(
        crdb_url, connect_args={"server_settings": {"application_name": APP}}
    )
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def row(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v int NOT NULL)"
        )
        await conn.exec_driver_sql("DELETE FROM kv")
        await conn.exec_driver_sql("INSERT INTO kv VALUES (1, 0)")
    return engine


async def ours_left(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "SELECT pid, state, query FROM pg_stat_activity "
            f"WHERE application_name = '{APP}' AND state <> 'idle'"
        )
        return list(result.all())


async def assert_nothing_of_ours_left(engine: AsyncEngine) -> None:
    async def gone() -> bool:
        return not await ours_left(engine)

    await wait_for(gone, "the helper's server sessions to leave pg_stat_activity")


async def value(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.exec_driver_sql("SELECT v FROM kv")).scalar_one())


async def timed(call: Any) -> tuple[BaseException | None, float]:
    """Run ``call()``; return the error it raised and seconds from entry."""
    started = time.monotonic()
    try:
        await call()
    except BaseException as error:
        if isinstance(error, asyncio.CancelledError):
            raise
        return error, time.monotonic() - started
    return None, time.monotonic() - started


async def hold_lock(engine: AsyncEngine) -> AsyncConnection:
    holder = await engine.connect()
    await holder.begin()
    await holder.exec_driver_sql("SELECT v FROM kv WHERE k = 1 FOR UPDATE")
    return holder


async def bump(handle: Any) -> None:
    from tests.retry.support import conn_of

    conn = await conn_of(handle)
    await conn.exec_driver_sql("UPDATE kv SET v = v + 1 WHERE k = 1")


@pytest.mark.parametrize("api", ALL_HELPERS)
async def test_a_held_lock_ends_at_the_deadline(
    api: Runner, row: AsyncEngine, helper_engine: AsyncEngine
) -> None:
    holder = await hold_lock(row)
    try:
        error, took_s = await timed(lambda: api(helper_engine, bump, POLICY))
        assert isinstance(error, DeadlineExceededError), error
        assert isinstance(error, RetriesExhaustedError)
        assert error.bound == "deadline_s"
        assert error.during_attempt
        assert took_s < BOUND_S, f"returned {took_s:.3f} s after entry"
        # cancelled on the server while the lock is still held: not waiting
        await assert_nothing_of_ours_left(row)
        await holder.exec_driver_sql("UPDATE kv SET v = 100 WHERE k = 1")
        await holder.commit()  # the lock holder commits normally
    finally:
        await holder.close()
    await assert_nothing_of_ours_left(row)
    assert await value(row) == 100  # the cancelled UPDATE never ran


@pytest.mark.parametrize("api", ALL_HELPERS)
async def test_a_held_lock_ends_at_the_deadline_on_psycopg(
    api: Runner, row: AsyncEngine, crdb_url: URL
) -> None:
    """psycopg's async connection: the same cancellation, its own cancel."""
    eng = create_async_engine(
        crdb_url.set(drivername="cockroachdb+psycopg"),
        connect_args={"application_name": APP},
    )
    holder = await hold_lock(row)
    try:
        error, took_s = await timed(lambda: api(eng, bump, POLICY))
        assert isinstance(error, DeadlineExceededError), error
        assert took_s < BOUND_S, f"returned {took_s:.3f} s after entry"
        await assert_nothing_of_ours_left(row)  # while the lock is still held
        await holder.exec_driver_sql("UPDATE kv SET v = 100 WHERE k = 1")
        await holder.commit()
    finally:
        await holder.close()
        await eng.dispose()
    await assert_nothing_of_ours_left(row)
    assert await value(row) == 100


@pytest.mark.parametrize("api", ALL_HELPERS)
async def test_a_slow_statement_ends_at_the_deadline(
    api: Runner, row: AsyncEngine, helper_engine: AsyncEngine
) -> None:
    async def slow(handle: Any) -> None:
        from tests.retry.support import conn_of

        conn = await conn_of(handle)
        await conn.exec_driver_sql("UPDATE kv SET v = -1 WHERE k = 1")
        await conn.exec_driver_sql("SELECT pg_sleep(60)")

    error, took_s = await timed(lambda: api(helper_engine, slow, POLICY))
    assert isinstance(error, DeadlineExceededError), error
    assert took_s < BOUND_S, f"returned {took_s:.3f} s after entry"
    await assert_nothing_of_ours_left(row)
    assert await value(row) == 0  # rolled back


@pytest.mark.parametrize("api", ALL_HELPERS)
async def test_a_silent_network_ends_at_the_deadline(
    api: Runner, row: AsyncEngine, crdb_url: URL
) -> None:
    assert crdb_url.port is not None
    async with FaultProxy("127.0.0.1", crdb_url.port) as proxy:
        eng = create_async_engine(
            crdb_url.set(host="127.0.0.1", port=proxy.port),
            connect_args={"server_settings": {"application_name": APP}},
        )
        try:

            async def stall(handle: Any) -> None:
                from tests.retry.support import conn_of

                conn = await conn_of(handle)
                await conn.exec_driver_sql("UPDATE kv SET v = -1 WHERE k = 1")
                proxy.silent = True  # nothing answers, nothing is closed
                await conn.exec_driver_sql("SELECT 1")

            error, took_s = await timed(lambda: api(eng, stall, POLICY))
            assert isinstance(error, DeadlineExceededError), error
            assert took_s < BOUND_S, f"returned {took_s:.3f} s after entry"
        finally:
            proxy.silent = False
            proxy.cut_all()
            await eng.dispose()
    await assert_nothing_of_ours_left(row)
    assert await value(row) == 0


async def test_a_block_waiting_on_its_own_lock_says_so(
    row: AsyncEngine, helper_engine: AsyncEngine
) -> None:
    """lock_on_read + awaiting another connection that writes the row read."""
    error: BaseException | None = None
    started = time.monotonic()
    try:
        async with retrying_session(helper_engine, policy=POLICY) as session:
            await session.execute(select(kv).where(kv.c.k == 1))  # FOR UPDATE
            async with helper_engine.begin() as other:  # waits for our lock
                await other.exec_driver_sql("UPDATE kv SET v = 5 WHERE k = 1")
    except DeadlineExceededError as caught:
        error = caught
    took_s = time.monotonic() - started
    assert error is not None
    assert took_s < BOUND_S, f"returned {took_s:.3f} s after entry"
    message = str(error)
    assert "lock_on_read" in message
    assert "row lock" in message
    await assert_nothing_of_ours_left(row)
    assert await value(row) == 0


async def test_deadline_cancels_are_counted(
    row: AsyncEngine, helper_engine: AsyncEngine
) -> None:
    from tests.retry.support import via_run_transaction

    retry_stats(helper_engine, reset=True)
    holder = await hold_lock(row)
    try:
        error, _ = await timed(
            lambda: via_run_transaction(
                helper_engine, bump, RetryPolicy(deadline_s=0.5, admission=False)
            )
        )
    finally:
        await holder.rollback()
        await holder.close()
    assert isinstance(error, DeadlineExceededError)
    stats = retry_stats(helper_engine)
    assert stats.give_ups == 1
    assert stats.deadline_cancels == 1


async def test_the_callers_own_cancellation_is_not_a_deadline(
    row: AsyncEngine, helper_engine: AsyncEngine
) -> None:
    from tests.retry.support import via_run_transaction

    holder = await hold_lock(row)
    try:
        task = asyncio.ensure_future(
            via_run_transaction(helper_engine, bump, RetryPolicy(deadline_s=60))
        )
        await wait_for(
            lambda: _waiting(row), "the helper's UPDATE to wait for the lock"
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await holder.rollback()
        await holder.close()
    await assert_nothing_of_ours_left(row)


async def _waiting(engine: AsyncEngine) -> bool:
    return any(state == "active" for _, state, _ in await ours_left(engine))


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sync_run_transaction_ends_a_lock_wait_at_the_deadline(
    crdb_url: URL, driver: str
) -> None:
    """The sync helper's bound: statement_timeout set for what is left."""
    from sqlalchemy import create_engine

    from sqlalchemy_crdb_async.sync import run_transaction

    eng = create_engine(
        crdb_url.set(drivername=f"cockroachdb+{driver}"),
        connect_args={"application_name": APP},
    )
    try:
        with eng.begin() as setup:
            setup.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v int NOT NULL)"
            )
            setup.exec_driver_sql("DELETE FROM kv")
            setup.exec_driver_sql("INSERT INTO kv VALUES (1, 0)")
        with eng.connect() as holder:
            holder.begin()
            holder.exec_driver_sql("SELECT v FROM kv WHERE k = 1 FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError) as caught:
                run_transaction(
                    eng,
                    lambda conn: conn.exec_driver_sql(
                        "UPDATE kv SET v = v + 1 WHERE k = 1"
                    ),
                    policy=POLICY,
                )
            took_s = time.monotonic() - started
            assert took_s < BOUND_S, f"returned {took_s:.3f} s after entry"
            assert "statement_timeout" in str(caught.value)
            holder.exec_driver_sql("UPDATE kv SET v = 100 WHERE k = 1")
            holder.commit()
        with eng.connect() as check:
            assert check.exec_driver_sql("SELECT v FROM kv").scalar() == 100
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            "CockroachDB CCL v25.2.1 (x86_64-pc-linux-gnu, "
            "built 2025/06/02 23:17:23, go1.23.7)",
            True,
        ),
        (
            "CockroachDB CCL v21.1.9 (x86_64-unknown-linux-gnu, "
            "built 2021/09/20 21:41:22, go1.15.14)",
            False,
        ),
        ("PostgreSQL 15.18 on x86_64-pc-linux-gnu", True),
    ],
)
def test_sync_statement_timeout_only_where_set_local_exists(
    version: str, expected: bool
) -> None:
    """SET LOCAL: PostgreSQL always, CockroachDB from v21.2."""
    from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
    from sqlalchemy_crdb_async.dialect.server import parse_server_version
    from sqlalchemy_crdb_async.retry._deadline import statement_timeout_sql
    from tests.conformance.checker import problems

    dialect = CockroachDBDialect_asyncpg()
    dialect.server_info = parse_server_version(version, "13.0.0")
    sql = statement_timeout_sql(RetryPolicy(deadline_s=2.5), time.monotonic(), dialect)
    assert (sql is not None) is expected
    if sql is not None:
        assert sql.startswith("SET LOCAL statement_timeout = ")
        assert 1 <= int(sql.rsplit(" ", 1)[1]) <= 2500
        assert problems(sql) == []
    no_deadline = RetryPolicy(deadline_s=None)
    assert statement_timeout_sql(no_deadline, time.monotonic(), dialect) is None
