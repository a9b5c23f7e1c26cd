"""The FIFO hand-off (sqlalchemy_crdb_async.retry._handoff) on its own.

A one-unit lock built as the module docstring shows is the owner: waiters are
handed the unit first in, first out, a retry at the head; a waiter cancelled
just as it was handed the unit passes it on (``task.cancel()``, and an anyio
cancel scope, which lets the task resume holding the unit and cancels it at
its next await); a waiter that leaves before the hand-off (cancelled, timed
out) leaves the queue. ``wait_handed`` gives an owner with a queue of its own
the same waiter's side. Ordering is observed through the queue's state and
bounded polls, never through timings.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from sqlalchemy_crdb_async.retry._handoff import Handoff, wait_handed
from tests.retry.support import HANG_S, until

if TYPE_CHECKING:
    from collections.abc import Coroutine


class _Lock:
    """One unit, owned as the module docstring shows, naming its holder."""

    def __init__(self, holder: str | None = None) -> None:
        self.held = holder is not None
        self.holder = holder
        self.handoff = Handoff()
        #: Who held the unit, in order (the first holder included).
        self.history: list[str] = [holder] if holder else []

    async def take(self, name: str, *, retry: bool = False) -> None:
        if not self.held and not self.handoff:
            self.held = True
        else:
            await self.handoff.wait(self.give_back, retry=retry)
        self.holder = name
        self.history.append(name)

    def give_back(self) -> None:
        self.holder = None
        if not self.handoff.hand_next():
            self.held = False


async def _queue(lock: _Lock, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Start ``work`` in a task and wait until it queues behind the others."""
    queued = lock.handoff.queued
    task = asyncio.create_task(work)
    await until(
        lambda: lock.handoff.queued == queued + 1, f"waiter {queued + 1} queues"
    )
    return task


async def _take_and_give_back(lock: _Lock, name: str, *, retry: bool = False) -> None:
    await lock.take(name, retry=retry)
    lock.give_back()


async def test_free_unit_is_taken_at_once_and_nobody_queues() -> None:
    lock = _Lock()
    await lock.take("a")
    assert (lock.held, lock.holder, lock.handoff.queued) == (True, "a", 0)
    assert not lock.handoff
    assert not lock.handoff.hand_next()  # nobody waits: the owner keeps it
    lock.give_back()
    assert not lock.held


async def test_waiters_are_handed_the_unit_first_in_first_out() -> None:
    lock = _Lock("holder")
    tasks = []
    for name in ["a", "b", "c"]:
        tasks.append(await _queue(lock, _take_and_give_back(lock, name)))
    assert lock.handoff  # a newcomer must queue
    lock.give_back()
    await asyncio.wait_for(asyncio.gather(*tasks), HANG_S)
    assert lock.history == ["holder", "a", "b", "c"]
    assert (lock.held, lock.handoff.queued, bool(lock.handoff)) == (False, 0, False)


async def test_a_retry_joins_the_head_of_the_queue() -> None:
    lock = _Lock("holder")
    tasks = []
    for name in ["a", "b", "retry", "c"]:
        retry = name == "retry"
        tasks.append(await _queue(lock, _take_and_give_back(lock, name, retry=retry)))
    lock.give_back()
    await asyncio.wait_for(asyncio.gather(*tasks), HANG_S)
    assert lock.history == ["holder", "retry", "a", "b", "c"]
    assert not lock.held


async def test_the_unit_stays_held_between_give_back_and_the_waiter() -> None:
    """No barging: handed over, the unit is the waiter's before it runs."""
    lock = _Lock("holder")
    waiter = await _queue(lock, lock.take("a"))
    lock.give_back()
    assert lock.held  # not free in between: a newcomer would queue
    assert lock.handoff.queued == 0
    await waiter
    assert lock.holder == "a"
    lock.give_back()
    assert not lock.held


async def test_a_waiter_cancelled_as_it_is_handed_the_unit_passes_it_on() -> None:
    lock = _Lock("holder")
    first = await _queue(lock, lock.take("first"))
    second = await _queue(lock, lock.take("second"))
    lock.give_back()  # hands the unit to `first` ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, HANG_S)  # the unit went on to the next waiter
    assert lock.history == ["holder", "second"]
    assert (lock.held, lock.holder, lock.handoff.queued) == (True, "second", 0)
    lock.give_back()
    assert not lock.held


async def test_the_last_waiter_cancelled_as_it_is_handed_the_unit_frees_it() -> None:
    lock = _Lock("holder")
    only = await _queue(lock, lock.take("only"))
    lock.give_back()
    only.cancel()
    with pytest.raises(asyncio.CancelledError):
        await only
    assert (lock.held, lock.history, bool(lock.handoff)) == (False, ["holder"], False)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    lock = _Lock("holder")
    gone = await _queue(lock, lock.take("gone"))
    stays = await _queue(lock, _take_and_give_back(lock, "stays"))
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert lock.handoff.queued == 1
    lock.give_back()
    await asyncio.wait_for(stays, HANG_S)
    assert lock.history == ["holder", "stays"]
    assert (lock.held, bool(lock.handoff)) == (False, False)


async def test_a_waiter_that_times_out_leaves_the_queue() -> None:
    lock = _Lock("holder")
    with pytest.raises(asyncio.TimeoutError):
        await lock.handoff.wait(lock.give_back, timeout_s=0.01)  # nobody hands
    assert (lock.handoff.queued, bool(lock.handoff)) == (0, False)
    assert lock.holder == "holder"  # the holder still holds it
    lock.give_back()
    assert not lock.held


async def test_anyio_scope_cancelled_as_the_unit_is_handed_loses_no_unit() -> None:
    """As FastAPI cancels a request: the scope's cancellation is delivered at
    the task's next await, so the waiter resumes holding the unit; its own
    cleanup gives it back, to the next waiter."""
    lock = _Lock("holder")
    scope = anyio.CancelScope()
    cleaned_up = asyncio.Event()

    async def first() -> None:
        with scope:
            await lock.take("first")
            try:
                await asyncio.Event().wait()  # the work: never finishes
            finally:
                lock.give_back()
                cleaned_up.set()

    task = await _queue(lock, first())
    second = await _queue(lock, lock.take("second"))
    lock.give_back()  # hands the unit to `first` ...
    scope.cancel()  # ... whose request is cancelled in the same turn
    await task  # the scope absorbs its own cancellation
    assert scope.cancelled_caught
    await asyncio.wait_for(second, HANG_S)
    # `first` held the unit until its cleanup (anyio cancels at the next
    # await), or never (cancelled at the hand-off): either way `second` has it.
    assert lock.history in (["holder", "first", "second"], ["holder", "second"])
    assert cleaned_up.is_set() == ("first" in lock.history)
    assert (lock.held, lock.holder, lock.handoff.queued) == (True, "second", 0)
    lock.give_back()
    assert (lock.held, bool(lock.handoff)) == (False, False)


async def test_anyio_scope_cancelled_while_waiting_leaves_the_queue() -> None:
    lock = _Lock("holder")
    scope = anyio.CancelScope()

    async def waiter() -> None:
        with scope:
            await lock.take("waiter")
            lock.give_back()

    task = await _queue(lock, waiter())
    scope.cancel()
    await task
    assert scope.cancelled_caught
    assert (lock.handoff.queued, bool(lock.handoff)) == (0, False)
    lock.give_back()
    assert (lock.held, lock.history) == (False, ["holder"])


async def test_a_unit_handed_into_a_shielded_scope_is_kept() -> None:
    """A waiter inside a shielded scope is not cancelled by the outer scope:
    it keeps the unit it was handed."""
    lock = _Lock("holder")
    outer = anyio.CancelScope()
    got = asyncio.Event()

    async def waiter() -> None:
        with outer:
            with anyio.CancelScope(shield=True):
                await lock.take("shielded")
                got.set()
            lock.give_back()  # after the shield: still runs (no await between)

    task = await _queue(lock, waiter())
    lock.give_back()
    outer.cancel()
    await task
    assert got.is_set()
    assert lock.history == ["holder", "shielded"]
    assert (lock.held, bool(lock.handoff)) == (False, False)


async def test_wait_handed_serves_an_owner_with_its_own_order() -> None:
    """An owner that keeps its own queue hands units in an order of its own
    (here the last waiter first); the waiter's side is the same: a waiter
    cancelled after it was handed a unit gives it back, one cancelled before
    leaves the owner's queue."""
    queue: list[asyncio.Future[None]] = []
    given_back: list[str] = []
    loop = asyncio.get_running_loop()

    def waiting(name: str) -> asyncio.Task[None]:
        waiter: asyncio.Future[None] = loop.create_future()
        queue.append(waiter)
        return asyncio.create_task(
            wait_handed(waiter, lambda: given_back.append(name), queue.remove)
        )

    first, second, third = waiting("first"), waiting("second"), waiting("third")
    await asyncio.sleep(0)  # all three await their futures
    queue.pop().set_result(None)  # the owner serves `third` first
    await asyncio.wait_for(third, HANG_S)
    handed = queue.pop()  # `second` is handed one ...
    handed.set_result(None)
    second.cancel()  # ... and cancelled before it runs: gives it back
    first.cancel()  # never handed: leaves the queue
    for task in (first, second):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert given_back == ["second"]
    assert queue == []
