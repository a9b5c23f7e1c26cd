"""Key claims (sqlalchemy_crdb_async.retry._claims), on the server.

Attempts that share a key run one after the other, the later one seeing what
the earlier committed; attempts on other keys run side by side; a waiting
attempt lends its admission slot; keys come back however the attempt ends
(commit, error, cancellation); keys claimed in two orders do not deadlock;
misuse gets a clear error. Ordering is observed through events and bounded
polls, never through timings.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sqlalchemy_crdb_async import (
    RetryPolicy,
    claim_keys,
    retry_stats,
    retrying,
    retrying_session,
    run_transaction,
)
from sqlalchemy_crdb_async.retry import _claims
from sqlalchemy_crdb_async.retry._admission import (
    AdmissionSettings,
    admission_for,
    configure_admission,
)
from tests.retry.support import fail_times, install, new_counter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from sqlalchemy.engine import URL

FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01)
#: A hang guard for gathers that would deadlock if claims were wrong; not a
#: timing assertion.
HANG_S = 60


@pytest.fixture
async def eng(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        crdb_url, pool_size=8, max_overflow=0, isolation_level="SERIALIZABLE"
    )
    await install(engine)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE IF EXISTS claim_rows")
        await conn.exec_driver_sql(
            "CREATE TABLE claim_rows (id INT PRIMARY KEY, n INT NOT NULL)"
        )
        await conn.exec_driver_sql(
            "INSERT INTO claim_rows SELECT i, 0 FROM generate_series(1, 4) i"
        )
    try:
        yield engine
    finally:
        await engine.dispose()


async def _until(ready: Callable[[], bool], what: str) -> None:
    """Yield to the loop until ``ready()`` (bounded: 5,000 turns)."""
    for _ in range(5_000):
        if ready():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


async def _queue_behind(
    eng: AsyncEngine,
    holder: Callable[[AsyncConnection], Awaitable[None]],
    holder_in: asyncio.Event,
    waiter: Callable[[AsyncConnection], Awaitable[None]],
) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
    """Start ``holder``'s attempt, wait until it is inside (``holder_in``), then
    start ``waiter``'s and wait until its claim waits."""
    held = asyncio.create_task(run_transaction(eng, holder, policy=FAST))
    await asyncio.wait_for(holder_in.wait(), HANG_S)
    waits = retry_stats(eng).claim_waits
    waiting = asyncio.create_task(run_transaction(eng, waiter, policy=FAST))
    await _until(lambda: retry_stats(eng).claim_waits == waits + 1, "a claim waits")
    return held, waiting


def _holding(
    row: int, inside: asyncio.Event, release: asyncio.Event, *, bump: bool = True
) -> Callable[[AsyncConnection], Awaitable[None]]:
    """A body that claims ``row``, says it is ``inside``, and holds the key
    until ``release`` (then bumps the row, with ``bump``)."""

    async def body(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", row))
        inside.set()
        await release.wait()
        if bump:
            await _bump(conn, row)

    return body


def _nothing_claimed(eng: AsyncEngine) -> bool:
    table = _claims._table_for(eng.sync_engine)
    return table.held == {} and table.waiting == []


async def _n(handle: AsyncConnection | AsyncSession, row: int) -> int:
    result = await handle.execute(
        text("SELECT n FROM claim_rows WHERE id = :id"), {"id": row}
    )
    return int(result.scalar_one())


async def _bump(handle: AsyncConnection | AsyncSession, row: int) -> None:
    await handle.execute(
        text("UPDATE claim_rows SET n = n + 1 WHERE id = :id"), {"id": row}
    )


# -- misuse --------------------------------------------------------------------


async def test_outside_an_attempt_is_refused(eng: AsyncEngine) -> None:
    async with eng.connect() as conn:
        with pytest.raises(sa_exc.InvalidRequestError, match="inside an attempt"):
            await claim_keys(conn, ("row", 1))


async def test_bad_claims_are_refused_with_the_fix(eng: AsyncEngine) -> None:
    async def body(conn: AsyncConnection) -> None:
        with pytest.raises(sa_exc.InvalidRequestError, match="at least one key"):
            await claim_keys(conn)
        with pytest.raises(TypeError, match="must be hashable"):
            await claim_keys(conn, ["row", 1])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="AsyncConnection or AsyncSession"):
            await claim_keys(eng, ("row", 1))  # type: ignore[arg-type]
        await claim_keys(conn, ("row", 1))
        with pytest.raises(sa_exc.InvalidRequestError, match="in one call"):
            await claim_keys(conn, ("row", 2))

    await run_transaction(eng, body, policy=FAST)
    assert _nothing_claimed(eng)


async def test_a_nested_attempt_cannot_claim(eng: AsyncEngine) -> None:
    async def inner(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 1))

    async def outer(conn: AsyncConnection) -> None:
        with pytest.raises(sa_exc.InvalidRequestError, match="outermost attempt"):
            await run_transaction(eng, inner, policy=FAST)
        await claim_keys(conn, ("row", 1))  # the outer one still can

    await run_transaction(eng, outer, policy=FAST)


async def test_after_the_attempt_its_claim_is_gone(eng: AsyncEngine) -> None:
    kept: list[AsyncConnection] = []

    async def body(conn: AsyncConnection) -> None:
        kept.append(conn)
        await claim_keys(conn, ("row", 1))

    await run_transaction(eng, body, policy=FAST)
    with pytest.raises(sa_exc.InvalidRequestError, match="inside an attempt"):
        await claim_keys(kept[0], ("row", 1))


# -- ordering --------------------------------------------------------------------


async def test_a_shared_key_runs_attempts_one_after_the_other(
    eng: AsyncEngine,
) -> None:
    first_in = asyncio.Event()
    let_first_commit = asyncio.Event()
    seen_by_second: list[int] = []

    async def first(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 1))
        await _bump(conn, 1)
        first_in.set()
        await let_first_commit.wait()

    async def second(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 1))
        seen_by_second.append(await _n(conn, 1))
        await _bump(conn, 1)

    one, two = await _queue_behind(eng, first, first_in, second)
    assert seen_by_second == []  # it queues behind the first's claim
    let_first_commit.set()
    await asyncio.wait_for(asyncio.gather(one, two), HANG_S)
    # The second ran after the first committed: it read the first's write, and
    # neither conflicted on the server.
    assert seen_by_second == [1]
    async with eng.connect() as conn:
        assert await _n(conn, 1) == 2


async def test_other_keys_run_side_by_side(eng: AsyncEngine) -> None:
    inside: set[int] = set()
    both_inside = asyncio.Event()

    async def body(conn: AsyncConnection, row: int) -> None:
        await claim_keys(conn, ("row", row))
        inside.add(row)
        if inside == {1, 2}:
            both_inside.set()
        # Each waits until the other is inside too: only possible side by side.
        await asyncio.wait_for(both_inside.wait(), HANG_S)
        await _bump(conn, row)

    await asyncio.gather(
        run_transaction(eng, lambda c: body(c, 1), policy=FAST),
        run_transaction(eng, lambda c: body(c, 2), policy=FAST),
    )
    assert inside == {1, 2}


async def test_keys_claimed_in_any_order_do_not_deadlock(eng: AsyncEngine) -> None:
    async def body(conn: AsyncConnection, rows: list[int]) -> None:
        await claim_keys(conn, *(("row", r) for r in rows))
        for row in rows:
            await _bump(conn, row)
            await asyncio.sleep(0)

    rng = random.Random(7)
    orders = [rng.sample([1, 2, 3, 4], 3) for _ in range(24)]
    await asyncio.wait_for(
        asyncio.gather(
            *(
                run_transaction(eng, lambda c, o=o: body(c, o), policy=FAST)
                for o in orders
            )
        ),
        HANG_S,
    )
    async with eng.connect() as conn:
        total = (
            await conn.exec_driver_sql("SELECT sum(n) FROM claim_rows")
        ).scalar_one()
    assert total == 3 * len(orders)
    assert _nothing_claimed(eng)


async def test_every_helper_and_session_target_claims(eng: AsyncEngine) -> None:
    maker = async_sessionmaker(eng)

    async def bump(handle: AsyncConnection | AsyncSession) -> None:
        await claim_keys(handle, ("row", 3))
        await _bump(handle, 3)

    await run_transaction(maker, bump, policy=FAST)
    async for attempt in retrying(eng, policy=FAST):
        async with attempt as conn:
            await bump(conn)
    async with retrying_session(maker, policy=FAST) as session:
        await bump(session)
    async with eng.connect() as conn:
        assert await _n(conn, 3) == 3


# -- the gate and the ends of an attempt ------------------------------------------


async def test_a_waiting_attempt_lends_its_slot(eng: AsyncEngine) -> None:
    """Limit 2: A holds key 1; B waits for key 1 without a slot; C, on key 2,
    runs and commits while A still holds its key."""
    gate = configure_admission(eng, AdmissionSettings(initial_limit=2, max_limit=2))
    a_in, release_a = asyncio.Event(), asyncio.Event()
    committed: list[str] = []

    a = _holding(1, a_in, release_a)

    async def b(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 1))
        await _bump(conn, 1)

    async def c(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 2))
        await _bump(conn, 2)

    task_a, task_b = await _queue_behind(eng, a, a_in, b)
    assert gate.in_flight == 1  # B lent its slot while it waits
    await asyncio.wait_for(run_transaction(eng, c, policy=FAST), HANG_S)
    committed.append("c")
    assert not task_a.done()
    release_a.set()
    await asyncio.wait_for(asyncio.gather(task_a, task_b), HANG_S)
    assert gate.in_flight == 0
    assert committed == ["c"]
    async with eng.connect() as conn:
        assert (await _n(conn, 1), await _n(conn, 2)) == (2, 1)


async def test_keys_come_back_after_an_error_and_a_cancellation(
    eng: AsyncEngine,
) -> None:
    holder_in, release_holder = asyncio.Event(), asyncio.Event()

    async def holder(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 4))
        holder_in.set()
        await release_holder.wait()
        raise LookupError("the body failed")

    async def waiter(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 4))

    held, cancelled = await _queue_behind(eng, holder, holder_in, waiter)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    release_holder.set()
    with pytest.raises(LookupError):
        await held
    # Nothing is held or queued: a new claim on the key does not wait.
    assert _nothing_claimed(eng)
    before = retry_stats(eng).claim_waits
    await run_transaction(eng, waiter, policy=FAST)
    assert retry_stats(eng).claim_waits == before
    assert admission_for(eng).in_flight == 0


async def test_a_retry_takes_its_keys_before_first_tries(eng: AsyncEngine) -> None:
    seq = await new_counter(eng)
    holder_in, release_holder = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def holder(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 1))
        holder_in.set()
        await release_holder.wait()

    async def first_try(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 1))
        order.append("first try")

    async def retried(conn: AsyncConnection) -> None:
        await fail_times(conn, 1, seq)  # attempt 1: a real 40001, before its claim
        await claim_keys(conn, ("row", 1))
        order.append("retry")

    held, waiting = await _queue_behind(eng, holder, holder_in, first_try)
    waits = retry_stats(eng).claim_waits
    retrying_task = asyncio.create_task(run_transaction(eng, retried, policy=FAST))
    await _until(lambda: retry_stats(eng).claim_waits == waits + 1, "the retry waits")
    release_holder.set()
    await asyncio.wait_for(asyncio.gather(held, waiting, retrying_task), HANG_S)
    # The retry already paid for an abort: it goes first, as at the gate.
    assert order == ["retry", "first try"]


# -- all keys at once ----------------------------------------------------------------


async def test_a_waiting_attempt_holds_none_of_its_keys(eng: AsyncEngine) -> None:
    """A holds key 2; B waits for keys 1 and 2; C, on key 1, runs and commits
    while B waits: B holds no key while it waits for the other."""
    a_in, release_a = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    a = _holding(2, a_in, release_a)

    async def b(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 1), ("row", 2))
        order.append("b")
        await _bump(conn, 1)
        await _bump(conn, 2)

    async def c(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 1))
        order.append("c")
        await _bump(conn, 1)

    task_a, task_b = await _queue_behind(eng, a, a_in, b)
    await asyncio.wait_for(run_transaction(eng, c, policy=FAST), HANG_S)
    assert order == ["c"]  # C did not wait for B, which waits for A
    release_a.set()
    await asyncio.wait_for(asyncio.gather(task_a, task_b), HANG_S)
    assert order == ["c", "b"]
    async with eng.connect() as conn:
        assert (await _n(conn, 1), await _n(conn, 2)) == (2, 2)
    assert _nothing_claimed(eng)


async def test_a_waiter_overtaken_enough_reserves_its_keys(
    eng: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B waits for keys 1 and 2 (A holds 2). Attempts on key 1 alone overtake
    it MAX_OVERTAKEN times; the next one waits until B has run."""
    monkeypatch.setattr(_claims, "MAX_OVERTAKEN", 2)
    a_in, release_a = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    a = _holding(2, a_in, release_a, bump=False)

    async def b(conn: AsyncConnection) -> None:
        await claim_keys(conn, ("row", 1), ("row", 2))
        order.append("b")

    async def on_key_1(conn: AsyncConnection, name: str) -> None:
        await claim_keys(conn, ("row", 1))
        order.append(name)
        await _bump(conn, 1)

    task_a, task_b = await _queue_behind(eng, a, a_in, b)
    for name in ("c1", "c2"):  # overtake B twice: neither waits
        await asyncio.wait_for(
            run_transaction(eng, lambda conn, n=name: on_key_1(conn, n), policy=FAST),
            HANG_S,
        )
    waits = retry_stats(eng).claim_waits
    third = asyncio.create_task(
        run_transaction(eng, lambda conn: on_key_1(conn, "c3"), policy=FAST)
    )
    await _until(lambda: retry_stats(eng).claim_waits == waits + 1, "c3 waits")
    assert order == ["c1", "c2"]  # key 1 is free, but B reserved it
    release_a.set()
    await asyncio.wait_for(asyncio.gather(task_a, task_b, third), HANG_S)
    assert order == ["c1", "c2", "b", "c3"]
    assert _nothing_claimed(eng)
