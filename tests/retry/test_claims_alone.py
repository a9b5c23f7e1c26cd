"""Key claims without contention, and the step from there to waiting.

A claim whose keys nobody holds or waits for takes them at once (each key
maps to the claim; nothing is left once the attempt ends). Attempts that
wait for a held key are handed it in order when its holder ends, while the
holder's other keys simply go.
A second claim of one attempt made from another task while the first waited
for its session's connection is refused, and leaks no key. The cache of the
last engine's table holds the engine weakly. Ordering is
observed through events and bounded polls, never through timings.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sqlalchemy_crdb_async import claim_keys, retry_stats, run_transaction
from sqlalchemy_crdb_async.retry import _claims
from tests.retry.support import FAST, HANG_S, until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL


@pytest.fixture
async def eng(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(crdb_url, pool_size=4, max_overflow=0)
    try:
        yield engine
    finally:
        await engine.dispose()


def _table(eng: AsyncEngine) -> dict[object, object]:
    """The keys held, each with its claim (after checking nobody waits)."""
    table = _claims._table_for(eng.sync_engine)
    assert all(c.waiter is not None for c in table.waiting)
    return dict(table.held)


async def test_an_uncontended_claim_makes_no_queue(eng: AsyncEngine) -> None:
    seen: dict[object, object] = {}

    async def body(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("a", 1), ("a", 2), ("t", "k"), ("a", 1))
        seen.update(_table(eng))
        attempt = _claims.current_attempt.get()
        assert attempt is not None
        assert set(seen.values()) == {attempt.claims}  # the claim itself

    before = retry_stats(eng).claim_waits
    await run_transaction(eng, body, policy=FAST)
    assert set(seen) == {("a", 1), ("a", 2), ("t", "k")}
    assert _table(eng) == {}
    assert retry_stats(eng).claim_waits == before


async def test_a_held_key_is_handed_on_in_order(eng: AsyncEngine) -> None:
    """The holder took keys 1 and 2; two attempts then wait for key 2: the
    holder's end hands key 2 to the first of them, then the second, and key
    1, which nobody asked for, is simply gone."""
    holder_in, release_holder = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def holder(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("k", 1), ("k", 2))
        holder_in.set()
        await release_holder.wait()
        order.append("holder")

    async def waiter(conn: AsyncConnection, name: str) -> None:
        await claim_keys(conn, ("k", 2))
        order.append(name)

    held = asyncio.create_task(run_transaction(eng, holder, policy=FAST))
    await asyncio.wait_for(holder_in.wait(), HANG_S)
    waits = retry_stats(eng).claim_waits
    tasks = []
    for i, name in enumerate(["first", "second"]):
        tasks.append(
            asyncio.create_task(
                run_transaction(eng, lambda c, n=name: waiter(c, n), policy=FAST)
            )
        )
        await until(
            lambda i=i: retry_stats(eng).claim_waits == waits + i + 1,
            f"{name} waits for key 2",
        )
    assert len(_claims._table_for(eng.sync_engine).waiting) == 2
    release_holder.set()
    await asyncio.wait_for(asyncio.gather(held, *tasks), HANG_S)
    assert order == ["holder", "first", "second"]
    assert _table(eng) == {}
    assert _claims._table_for(eng.sync_engine).waiting == []


async def test_a_second_claim_from_another_task_of_the_attempt_is_refused(
    eng: AsyncEngine,
) -> None:
    """The session's claim waits for its first connection while a claim on
    another connection, in another task of the same attempt, goes through:
    the session's claim is then refused, and no key stays claimed."""
    maker = async_sessionmaker(eng)
    outcomes: list[BaseException | None] = []

    async def body(session: AsyncSession) -> None:
        async with eng.connect() as other:
            results = await asyncio.gather(
                claim_keys(session, ("s", 1)),
                claim_keys(other, ("s", 2)),
                return_exceptions=True,
            )
        outcomes.extend(results)

    await asyncio.wait_for(run_transaction(maker, body, policy=FAST), HANG_S)
    refused = [r for r in outcomes if isinstance(r, sa_exc.InvalidRequestError)]
    assert len(refused) == 1, outcomes
    assert "already called in this attempt" in str(refused[0])
    assert _table(eng) == {}


def test_the_table_of_an_engine_is_found_again_and_lets_it_go() -> None:
    """The last engine's table is cached through a weak reference: found
    again, never another engine's, never kept alive, and attempts with no
    engine keep their own table after the cached engine is gone."""
    first, second = create_engine("sqlite://"), create_engine("sqlite://")
    table = _claims._table_for(first)
    assert _claims._table_for(first) is table
    other = _claims._table_for(second)
    assert other is not table
    assert _claims._table_for(first) is table
    gone = weakref.ref(first)
    del first, table
    gc.collect()
    assert gone() is None  # the cache did not keep the engine
    assert _claims._table_for(None) is _claims._no_engine
    assert _claims._table_for(second) is other
