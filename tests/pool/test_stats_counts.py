"""``pool_stats()`` counters against what went out on the wire.

asyncpg's query logger sees every message the pool's connections send (the
reset, alone or travelling with a ``BEGIN``, and the pool's ping included), so
the counters are compared with it. The path under test: a connection that owes
its session reset (pool/_reset.py, after a ``COMMIT``) is checked out, sends
nothing and goes back, maybe more than once, before a borrower pays the reset.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from sqlalchemy_crdb_async import PoolSettings, pool_stats
from sqlalchemy_crdb_async.pool._records import state_of
from sqlalchemy_crdb_async.pool._reset import PING_SQL
from tests.pool.support import query_log, settle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

#: A read that leaves nothing behind (SQLAlchemy compiled it, the function is
#: pure): it needs no reset of its own, so it pays the owed one and adds none.
SHOW_PATH = sa.select(sa.func.current_setting("search_path"))


def wire_resets(log: list[str]) -> int:
    """Session resets sent: each carries ``RESET ALL`` once (PostgreSQL and
    CockroachDB, alone, with ``ROLLBACK`` or with ``BEGIN``)."""
    return sum("RESET ALL" in q for q in log)


async def _owing(url: URL, settings: PoolSettings) -> tuple[AsyncEngine, list[str]]:
    """A one-connection pool whose connection owes its reset, and the log of
    every statement sent on it."""
    eng = create_async_engine(url, **settings.engine_kwargs())
    log = query_log(eng)
    # The first reset on return goes out on its own (the server has not
    # taken one yet on this pool); after this COMMIT the reset is owed.
    for path in ("first", "leaked"):
        async with eng.begin() as conn:
            await conn.execute(sa.text(f"SET search_path = {path}"))
    driver = _idle_driver(eng)
    assert driver.crdb_owed is not None
    await settle()
    assert wire_resets(log) == 1
    assert pool_stats(eng)["resets"] == 2  # one sent, one owed
    return eng, log


async def _pay(eng: AsyncEngine, log: list[str]) -> None:
    """The next borrower's ``BEGIN`` carries the owed reset, once; then every
    reset counted went out (the read's return may send one more: the
    ``ROLLBACK`` carries it, and the count follows)."""
    async with eng.connect() as conn:
        assert await conn.scalar(SHOW_PATH) != "leaked"
    await settle()
    assert sum(q.startswith("BEGIN;") and "RESET ALL" in q for q in log) == 1
    assert wire_resets(log) == pool_stats(eng)["resets"]


def _idle_driver(eng: AsyncEngine) -> Any:
    [record] = list(eng.sync_engine.pool._pool._queue._queue)  # type: ignore[attr-defined]
    return record.driver_connection


async def _connect(eng: AsyncEngine) -> None:
    async with eng.connect():
        pass


async def _begin(eng: AsyncEngine) -> None:
    async with eng.begin():
        pass


async def _session(eng: AsyncEngine) -> None:
    async with AsyncSession(eng) as session:
        await session.connection()  # checked out, nothing sent


UNUSED = [_connect, _begin, _session]


@pytest.mark.parametrize("unused", UNUSED, ids=[u.__name__[1:] for u in UNUSED])
async def test_an_owed_reset_returned_unused_is_counted_once(
    crdb_url: URL, unused: Callable[[AsyncEngine], Awaitable[None]]
) -> None:
    settings = PoolSettings(pool_size=1, idle_before_ping_s=None)
    eng, log = await _owing(crdb_url, settings)
    try:
        sent = len(log)
        for _ in range(3):
            await unused(eng)
        await settle()
        assert log[sent:] == []  # nothing went out: no reset, no round trip
        assert _idle_driver(eng).crdb_owed is not None
        assert pool_stats(eng)["resets"] == 2
        await _pay(eng, log)
    finally:
        await eng.dispose()


async def test_pings_and_checkouts_of_an_owing_connection_count_what_went_out(
    crdb_url: URL,
) -> None:
    # a ping at every checkout: the ping leaves the reset owed (pool/_reset.py)
    settings = PoolSettings(pool_size=1, idle_before_ping_s=0.0)
    eng, log = await _owing(crdb_url, settings)
    try:
        before = pool_stats(eng)
        sent = len(log)
        for _ in range(3):
            await _connect(eng)
        await settle()
        after = pool_stats(eng)
        pings = len(log[sent:])
        assert pings >= 1
        assert log[sent:] == [PING_SQL] * pings  # pings only: the reset still owed
        assert after["pings_sent"] - before["pings_sent"] == pings
        assert after["checkouts"] - before["checkouts"] == 3
        assert after["resets"] == before["resets"]
        assert after["connections_opened"] == before["connections_opened"] == 1
        assert after["connections_lost"] == 0
        await _pay(eng, log)
        assert pool_stats(eng)["checkouts"] == after["checkouts"] + 1
    finally:
        await eng.dispose()


async def test_an_owing_connection_closed_on_return_counts_its_reset_once(
    crdb_url: URL,
) -> None:
    # due for closing while out: the return closes it, its owed reset unpaid
    settings = PoolSettings(pool_size=1, idle_before_ping_s=None)
    eng, log = await _owing(crdb_url, settings)
    try:
        async with eng.connect():
            [record] = list(eng.sync_engine.pool._records)  # type: ignore[attr-defined]
            state = state_of(record)
            assert state is not None
            state.deadline = time.monotonic()
        for _ in range(2):
            await _connect(eng)  # a new connection: clean, owes nothing
        await settle()
        stats = pool_stats(eng)
        assert stats["recycled_by_lifetime"] == 1
        assert stats["connections_opened"] == 2
        assert stats["connections_lost"] == 0
        assert stats["checkouts"] == 5
        assert stats["resets"] == 2  # the owed one counted once, never sent
        assert wire_resets(log) == 1
    finally:
        await eng.dispose()
