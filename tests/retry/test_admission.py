"""Contention-adaptive admission: the gate itself, and the helpers through it.

Correctness only (no timings): the limit falls on real 40001s and recovers,
queueing is first in first out, a cancelled waiter leaves the queue without
leaking a slot, the limit never exceeds the pool, nested attempts and bodies
that open a second connection do not deadlock on the gate, the bank conserves
money on hot rows, and a give-up names the bound that was hit.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from sqlalchemy_crdb_async import (
    RetriesExhaustedError,
    RetryPolicy,
    retry_stats,
    retrying,
    retrying_session,
    run_transaction,
)
from sqlalchemy_crdb_async.retry._admission import (
    MIN_WINDOW,
    UNBOUNDED_POOL_LIMIT,
    Admission,
    AdmissionSettings,
    Slot,
    admission_for,
    configure_admission,
    is_conflict,
)
from tests.retry.support import fail_times, install, new_counter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01)
HOT_ACCOUNTS = 10
START = 1_000


async def _hold(gate: Admission) -> Slot:
    """A slot taken by another task (this task would pass through as nested)."""
    return await asyncio.create_task(gate.acquire())


async def _until(predicate: object, limit: int = 1_000) -> None:
    """Yield to the loop until ``predicate()`` holds (bounded)."""
    for _ in range(limit):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# -- the gate alone -------------------------------------------------------------


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="initial_limit must be an integer >= 1"):
        AdmissionSettings(initial_limit=0)
    with pytest.raises(ValueError, match="decrease_ratio must be a number between"):
        AdmissionSettings(decrease_ratio=1.0)
    with pytest.raises(ValueError, match="max_limit must be an integer >= 1"):
        AdmissionSettings(max_limit=True)  # type: ignore[arg-type]


def test_limit_is_bounded_by_the_pool() -> None:
    gate = Admission(3, AdmissionSettings(initial_limit=8, max_limit=50))
    assert gate.max_limit == 3
    assert gate.current_limit == 3


async def test_waiters_are_served_first_in_first_out_and_retries_first() -> None:
    gate = Admission(10, AdmissionSettings(initial_limit=1))
    holder = await _hold(gate)
    order: list[str] = []

    async def take(name: str, retry: bool = False) -> None:
        slot = await gate.acquire(retry=retry)
        order.append(name)
        slot.release(None, retried=True)

    tasks = []
    for i, name in enumerate(["a", "b", "c", "retry"]):
        tasks.append(asyncio.create_task(take(name, retry=name == "retry")))
        await _until(lambda i=i: gate.queued == i + 1)
    holder.release(None, retried=True)
    await asyncio.gather(*tasks)
    assert order == ["retry", "a", "b", "c"]
    assert gate.in_flight == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_leaks_no_slot() -> None:
    gate = Admission(10, AdmissionSettings(initial_limit=1))
    holder = await _hold(gate)
    waiter = asyncio.create_task(gate.acquire())
    await _until(lambda: gate.queued == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.queued == 0
    holder.release(None, retried=True)
    assert gate.in_flight == 0
    again = await _hold(gate)  # the slot is free: no wait
    assert gate.in_flight == 1
    again.release(None, retried=True)


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    gate = Admission(10, AdmissionSettings(initial_limit=1))
    holder = await _hold(gate)
    first = asyncio.create_task(gate.acquire())
    await _until(lambda: gate.queued == 1)
    second = asyncio.create_task(gate.acquire())
    await _until(lambda: gate.queued == 2)
    holder.release(None, retried=True)  # hands the slot to `first` ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    slot = await second  # the slot went on to the next waiter
    assert gate.in_flight == 1
    slot.release(None, retried=True)
    assert gate.in_flight == 0


async def test_a_waiter_times_out_and_leaves_the_queue() -> None:
    gate = Admission(10, AdmissionSettings(initial_limit=1))
    holder = await _hold(gate)
    with pytest.raises(asyncio.TimeoutError):
        await gate.acquire(timeout_s=0.01)
    assert gate.queued == 0
    holder.release(None, retried=True)
    assert gate.in_flight == 0


async def test_one_decrease_per_window() -> None:
    gate = Admission(64, AdmissionSettings(initial_limit=16))
    slots = [await _hold(gate) for _ in range(8)]
    conflict = _serialization_failure()
    for slot in slots:  # eight conflicts of one window: one halving
        slot.release(conflict)
    assert gate.current_limit == 8
    slot = await _hold(gate)
    slot.release(conflict)  # a new window: halves again
    assert gate.current_limit == 4


async def test_a_low_limit_grows_one_slot_per_min_window_clean_commits() -> None:
    # At limit 1 a single clean commit used to make it 2; now MIN_WINDOW (4)
    # clean commits, each while the gate is the bottleneck, add one slot.
    gate = Admission(64, AdmissionSettings(initial_limit=1))
    commits = 0
    while gate.current_limit == 1:
        slot = await _hold(gate)  # the one slot: the gate is the bottleneck
        slot.release(None)
        commits += 1
    assert commits == MIN_WINDOW
    assert gate.current_limit == 2
    # from a limit of MIN_WINDOW on, 1 / limit per clean commit (TCP's rate)
    big = Admission(64, AdmissionSettings(initial_limit=8))
    held = [await _hold(big) for _ in range(8)]  # every slot taken
    held[0].release(None)
    assert big.limit == pytest.approx(8 + 1 / 8)
    for slot in held[1:]:
        slot.release(None, retried=True)  # a retried commit leaves the limit


async def test_slot_context_manager_reports_the_outcome() -> None:
    gate = Admission(64, AdmissionSettings(initial_limit=4))
    with pytest.raises(type(_serialization_failure())):
        async with gate.slot():
            raise _serialization_failure()
    assert gate.current_limit == 2
    assert gate.in_flight == 0
    with pytest.raises(KeyError):
        async with gate.slot():
            raise KeyError("not a conflict")
    assert gate.current_limit == 2


def _serialization_failure() -> Exception:
    from sqlalchemy.exc import OperationalError

    class Orig(Exception):
        sqlstate = "40001"

    return OperationalError("SELECT 1", None, Orig("could not serialize"))


def test_is_conflict() -> None:
    assert is_conflict(_serialization_failure())
    assert not is_conflict(KeyError("x"))
    assert not is_conflict(None)


# -- through the helpers, on the server ------------------------------------------


@pytest.fixture
async def hot(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(
        crdb_url, pool_size=16, max_overflow=0, isolation_level="SERIALIZABLE"
    )
    await install(eng)
    async with eng.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE IF EXISTS hot_accounts")
        await conn.exec_driver_sql(
            "CREATE TABLE hot_accounts (id INT PRIMARY KEY, balance INT NOT NULL)"
        )
        await conn.exec_driver_sql(
            "INSERT INTO hot_accounts SELECT i, 1000 FROM generate_series(1, 10) i"
        )
    try:
        yield eng
    finally:
        await eng.dispose()


async def test_limit_falls_under_conflicts_and_recovers(hot: AsyncEngine) -> None:
    gate = configure_admission(hot, AdmissionSettings(initial_limit=8))
    seq = await new_counter(hot)
    # three real 40001s in a row: each attempt ran in a new window
    await run_transaction(hot, lambda c: fail_times(c, 3, seq), policy=FAST)
    assert retry_stats(hot).admission_limit == 1
    assert gate.in_flight == 0

    async def clean(_: AsyncConnection) -> None:
        await _.exec_driver_sql("SELECT 1")

    # 16 tasks queue on a limit of 1: every clean commit widens it
    await asyncio.gather(*(run_transaction(hot, clean, policy=FAST) for _ in range(48)))
    stats = retry_stats(hot)
    assert 4 <= stats.admission_limit <= 16
    assert stats.admission_in_flight == 0
    assert stats.admission_queued == 0
    assert stats.admission_waits > 0


async def test_admission_off_skips_the_gate(hot: AsyncEngine) -> None:
    gate = configure_admission(hot, AdmissionSettings(initial_limit=1))
    holder = await _hold(gate)  # the only slot, held by someone else
    try:
        off = RetryPolicy(admission=False)
        assert await run_transaction(hot, _one, policy=off) == 1
    finally:
        holder.release(None, retried=True)


async def _one(conn: AsyncConnection) -> int:
    return int((await conn.exec_driver_sql("SELECT 1")).scalar_one())


async def test_nested_attempts_and_second_connections_do_not_deadlock(
    hot: AsyncEngine,
) -> None:
    configure_admission(hot, AdmissionSettings(initial_limit=1, max_limit=1))

    async def outer(conn: AsyncConnection) -> int:
        # a nested helper on the same engine passes through the gate ...
        inner = await run_transaction(hot, _one, policy=FAST)
        async with retrying_session(hot, policy=FAST) as session:
            await session.execute(text("SELECT 1"))
        # ... and a plain second connection needs only the pool
        async with hot.connect() as second:
            await second.exec_driver_sql("SELECT 1")
        return inner + await _one(conn)

    results = await asyncio.wait_for(
        asyncio.gather(*(run_transaction(hot, outer, policy=FAST) for _ in range(4))),
        timeout=60,  # a hang guard, not a timing assertion
    )
    assert results == [2, 2, 2, 2]
    assert admission_for(hot).in_flight == 0


async def test_a_pool_smaller_than_the_limit(crdb_url: URL) -> None:
    small = create_async_engine(
        crdb_url, pool_size=2, max_overflow=0, isolation_level="SERIALIZABLE"
    )
    try:
        gate = configure_admission(small, AdmissionSettings(initial_limit=8))
        assert gate.current_limit == 2
        results = await asyncio.wait_for(
            asyncio.gather(*(run_transaction(small, _one) for _ in range(16))),
            timeout=60,  # a hang guard, not a timing assertion
        )
        assert results == [1] * 16
        assert 1 <= retry_stats(small).admission_limit <= 2
    finally:
        await small.dispose()
    unbounded = create_async_engine(crdb_url, poolclass=NullPool)
    try:
        assert admission_for(unbounded).max_limit == UNBOUNDED_POOL_LIMIT
    finally:
        await unbounded.dispose()


async def _hot_transfer(
    handle: AsyncConnection | AsyncSession, rng: random.Random
) -> None:
    a, b = rng.sample(range(1, HOT_ACCOUNTS + 1), 2)
    amount = rng.randint(1, 10)
    rows = await handle.execute(
        text("SELECT id, balance FROM hot_accounts WHERE id IN (:a, :b)"),
        {"a": a, "b": b},
    )
    balance = {int(r[0]): int(r[1]) for r in rows}
    for key, delta in sorted({a: -amount, b: amount}.items()):
        await handle.execute(
            text("UPDATE hot_accounts SET balance = :v WHERE id = :id"),
            {"v": balance[key] + delta, "id": key},
        )


async def test_hot_bank_conserves_money_with_the_default_policy(
    hot: AsyncEngine,
) -> None:
    configure_admission(hot, AdmissionSettings())
    maker = async_sessionmaker(hot)

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(6):
            if i % 3 == 0:
                await run_transaction(hot, lambda c: _hot_transfer(c, rng))
            elif i % 3 == 1:
                async for attempt in retrying(maker):
                    async with attempt as session:
                        await _hot_transfer(session, rng)
            else:
                await run_transaction(maker, lambda _: _session_transfer(hot, rng))

    before = retry_stats(hot)
    await asyncio.gather(*(worker(s) for s in range(32)))
    after = retry_stats(hot)
    async with hot.connect() as conn:
        total = (
            await conn.exec_driver_sql("SELECT sum(balance) FROM hot_accounts")
        ).scalar_one()
    assert total == HOT_ACCOUNTS * START
    assert after.give_ups == before.give_ups
    assert 1 <= after.admission_limit <= 16
    assert after.admission_in_flight == 0


async def _session_transfer(engine: AsyncEngine, rng: random.Random) -> None:
    async with retrying_session(engine) as session:
        await _hot_transfer(session, rng)


# -- the give-up names its bound ------------------------------------------------------


async def test_give_up_on_attempts_names_max_attempts(hot: AsyncEngine) -> None:
    seq = await new_counter(hot)
    policy = RetryPolicy(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.01)
    with pytest.raises(RetriesExhaustedError) as info:
        await run_transaction(hot, lambda c: fail_times(c, 5, seq), policy=policy)
    assert info.value.bound == "max_attempts"
    assert "RetryPolicy.max_attempts=2" in str(info.value)
    assert "Raise max_attempts" in str(info.value)


async def test_give_up_on_the_deadline_names_deadline_s(hot: AsyncEngine) -> None:
    seq = await new_counter(hot)
    policy = RetryPolicy(
        deadline_s=0.05, initial_backoff_s=0.1, max_backoff_s=0.1, jitter="none"
    )
    with pytest.raises(RetriesExhaustedError) as info:
        await run_transaction(hot, lambda c: fail_times(c, 5, seq), policy=policy)
    assert info.value.bound == "deadline_s"
    assert "RetryPolicy.deadline_s=0.05" in str(info.value)


async def test_time_queued_counts_against_the_deadline(hot: AsyncEngine) -> None:
    gate = configure_admission(hot, AdmissionSettings(initial_limit=1))
    holder = await _hold(gate)
    try:
        with pytest.raises(RetriesExhaustedError) as info:
            await run_transaction(hot, _one, policy=RetryPolicy(deadline_s=0.05))
    finally:
        holder.release(None, retried=True)
    assert info.value.bound == "deadline_s"
    assert "waiting for admission" in str(info.value)
    assert gate.queued == 0
    assert gate.in_flight == 0


async def test_retry_stats_show_the_queue(hot: AsyncEngine) -> None:
    gate = configure_admission(hot, AdmissionSettings(initial_limit=1))
    holder = await _hold(gate)
    task = asyncio.create_task(run_transaction(hot, _one, policy=FAST))
    await _until(lambda: gate.queued == 1)
    stats = retry_stats(hot)
    assert (stats.admission_limit, stats.admission_in_flight) == (1, 1)
    assert stats.admission_queued == 1
    holder.release(None, retried=True)
    assert await task == 1
    stats = retry_stats(hot)
    assert (stats.admission_in_flight, stats.admission_queued) == (0, 0)
    assert stats.admission_waits == 1
    assert stats.admission_wait_s > 0
