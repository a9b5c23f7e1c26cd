"""The claim table alone (``retry/_claims.py``: ``_Table`` and ``Claims``), no
server: many attempts on a few keys, some cancelled while they wait, some
just as they are handed their keys. No key is ever held by two attempts, no
attempt waits while holding a key, every attempt ends, and the table is empty
after. Ordering is observed through the table's own state, never timings.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from sqlalchemy_crdb_async.retry import _claims

HANG_S = 60


async def _attempt(
    table: _claims._Table,
    keys: frozenset[int],
    holders: dict[int, object],
    *,
    retry: bool = False,
) -> None:
    claims = _claims.Claims(table, keys, retry)
    try:
        if not table.take_now(claims):
            await claims.wait()
        assert claims.held
        for key in keys:
            assert key not in holders, f"key {key} held twice"
            assert table.held[key] is claims
            holders[key] = claims
        await asyncio.sleep(0)  # hold the keys across a loop turn
    finally:
        for key in keys:
            if holders.get(key) is claims:
                del holders[key]
        claims.release()


async def _until_waiting(table: _claims._Table, n: int) -> None:
    """Yield to the loop until ``n`` claims wait (bounded: 100 turns)."""
    for _ in range(100):
        if len(table.waiting) == n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never {n} waiting: {table.waiting}")


async def _behind_a_holder(
    table: _claims._Table, *retries: bool
) -> tuple[_claims.Claims, list[_claims.Claims], list[asyncio.Task[None]]]:
    """A claim holding key 1, and one waiting claim per ``retries`` flag."""
    holder = _claims.Claims(table, frozenset({1}), False)
    assert table.take_now(holder)
    waiters = [_claims.Claims(table, frozenset({1}), retry) for retry in retries]
    tasks = [asyncio.create_task(waiter.wait()) for waiter in waiters]
    await _until_waiting(table, len(waiters))
    return holder, waiters, tasks


@pytest.mark.parametrize("seed", range(5))
async def test_random_claims_and_cancellations_leave_nothing(seed: int) -> None:
    rng = random.Random(seed)
    table = _claims._Table()
    holders: dict[int, object] = {}
    tasks = [
        asyncio.create_task(
            _attempt(
                table,
                frozenset(rng.sample(range(6), rng.randint(1, 3))),
                holders,
                retry=rng.random() < 0.1,
            )
        )
        for _ in range(200)
    ]
    for _ in range(40):  # cancel some, at whatever point they are
        await asyncio.sleep(0)
        rng.choice(tasks).cancel()
    results = await asyncio.wait_for(
        asyncio.gather(*tasks, return_exceptions=True), HANG_S
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, asyncio.CancelledError) for e in errors), errors
    assert sum(1 for r in results if r is None) >= 200 - 40
    assert table.held == {}
    assert table.waiting == []
    assert holders == {}


async def test_keys_handed_to_a_cancelled_waiter_go_to_the_next() -> None:
    table = _claims._Table()
    first, (second, third), (waiting_second, waiting_third) = await _behind_a_holder(
        table, False, False
    )
    assert table.waiting == [second, third]
    first.release()  # hands key 1 to second...
    assert table.held == {1: second}
    waiting_second.cancel()  # ...which leaves before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiting_second
    await asyncio.wait_for(waiting_third, HANG_S)  # so third gets it
    assert table.held == {1: third}
    third.release()
    assert table.held == {}
    assert table.waiting == []


async def test_a_retry_waits_ahead_of_first_tries() -> None:
    table = _claims._Table()
    holder, (first_try, retry), tasks = await _behind_a_holder(table, False, True)
    assert table.waiting == [retry, first_try]
    # A newcomer on the retry's key waits too: the retry reserved it.
    assert not table.take_now(_claims.Claims(table, frozenset({1, 2}), False))
    holder.release()
    assert table.held == {1: retry}
    retry.release()
    assert table.held == {1: first_try}
    first_try.release()
    await asyncio.wait_for(asyncio.gather(*tasks), HANG_S)
    assert table.held == {}
    assert table.waiting == []
