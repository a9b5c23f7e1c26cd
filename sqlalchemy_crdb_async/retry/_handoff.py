"""FIFO hand-off: waiters queue for a unit that a releaser hands on directly.

A unit is whatever the owner counts: a key claimed by one attempt at a time
(:mod:`._claims`), a slot of the admission gate (:mod:`._admission`). The
owner keeps the count; a :class:`Handoff` keeps the queue of waiters and
moves a unit from the one giving it back to the one waiting longest, without
the unit ever becoming free in between (no barging: while anyone waits, a
newcomer must queue, which the owner sees as ``bool(handoff)``). A lock,
one unit::

    class Lock:
        def __init__(self) -> None:
            self.held = False
            self.handoff = Handoff()

        async def take(self, *, retry: bool = False) -> None:
            if not self.held and not self.handoff:
                self.held = True                   # free: taken at once
                return
            await self.handoff.wait(self.give_back, retry=retry)  # handed: held

        def give_back(self) -> None:
            if not self.handoff.hand_next():       # else the next waiter holds it
                self.held = False

Rules
-----
- First in, first out; ``wait(..., retry=True)`` joins the head of the
  queue (an attempt that already paid for an abort goes first).
- :meth:`Handoff.hand_next` hands one unit to the first waiter still
  waiting and returns True; False when nobody waits, and the unit stays with
  the owner (free, or counted down). It never awaits: the unit belongs to the
  waiter from that moment, before the waiter's task runs again.
- A waiter that leaves the queue (cancelled, by ``task.cancel()`` or an
  anyio cancel scope, or timed out by ``timeout_s``) before being handed a
  unit just leaves. One that leaves after it was handed one (the hand-off
  and the cancellation in the same turn of the loop) gives the unit back
  through the owner's ``give_back`` callback, which passes it on to the next
  waiter. Either way the exception propagates; no unit is lost.
- One event loop, no threads: the queue is not locked.
- An owner whose queue is not first in, first out (one that hands a unit to
  any waiter it can serve, in an order of its own) keeps its own queue and
  uses :func:`wait_handed`, the waiter's side of the same rules.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Handoff", "wait_handed"]


class Handoff(deque["asyncio.Future[None]"]):
    """A FIFO queue of waiters for units handed over directly; see the module
    docstring.

    It is the deque of the waiters' futures, so that ``bool(handoff)``, which
    the owner asks on every take and give back, costs no Python call. It is
    changed only through the methods below."""

    __slots__ = ()

    @property
    def queued(self) -> int:
        """How many waiters still wait (not yet handed a unit nor left)."""
        return sum(1 for waiter in self if not waiter.done())

    def hand_next(self) -> bool:
        """Hand a unit to the first waiter still waiting: True; False when
        nobody waits (the caller keeps the unit)."""
        while self:
            waiter = self.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    async def wait(
        self,
        give_back: Callable[[], None],
        *,
        retry: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        """Queue until :meth:`hand_next` hands this waiter a unit, which it
        then holds. ``retry``: join the head of the queue. ``timeout_s``:
        raise ``asyncio.TimeoutError`` if no unit came by then. Leaving with
        any exception after a unit was handed calls ``give_back()`` first."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if retry:
            self.appendleft(waiter)
        else:
            self.append(waiter)
        await wait_handed(waiter, give_back, self._leave, timeout_s=timeout_s)

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        with suppress(ValueError):
            self.remove(waiter)


async def wait_handed(
    waiter: asyncio.Future[None],
    give_back: Callable[[], None],
    leave: Callable[[asyncio.Future[None]], None],
    *,
    timeout_s: float | None = None,
) -> None:
    """The waiter's side of a hand-off, for an owner with a queue of its own
    (:class:`Handoff` is one): await ``waiter``, which the owner sets when it
    hands this waiter a unit. Leaving with any exception (cancelled, or
    ``asyncio.TimeoutError`` after ``timeout_s``): if the unit was handed
    already, ``give_back()`` passes it on; else the waiter is cancelled and
    ``leave(waiter)`` takes it out of the owner's queue. The exception
    propagates."""
    try:
        if timeout_s is None:
            await waiter
        else:
            await asyncio.wait_for(waiter, max(0.0, timeout_s))
    except BaseException:
        if waiter.done() and not waiter.cancelled():
            give_back()  # handed a unit while leaving: pass it on
        else:
            waiter.cancel()
            leave(waiter)
        raise
