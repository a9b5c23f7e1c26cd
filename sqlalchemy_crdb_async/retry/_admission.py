"""Contention-adaptive admission: how many transactions an engine runs at once.

Conflicts (SQLSTATE 40001, 40P01) are a concurrency problem: past a point,
every extra transaction in flight on the same rows adds aborts, not commits.
The retry helpers (:func:`.run_transaction`, :func:`.retrying`,
:func:`.retrying_session`) therefore pass each attempt through an engine-wide
gate whose limit follows the conflict rate, the way TCP congestion control
sizes its window. Nobody hand-tunes it; ``RetryPolicy(admission=False)``
turns it off for one call.

The limit (AIMD)
----------------
One :class:`Admission` per (sync) ``Engine``, created on first use. Its limit
is a float, ``1 <= limit <= max_limit``; ``floor(limit)`` attempts may hold a
slot at once.

- *Additive increase*: an attempt that commits on the first try while the gate
  is the bottleneck (every slot taken, or someone queued) adds
  ``1 / max(limit, MIN_WINDOW)``: one slot per window of clean commits, TCP's
  congestion avoidance (RFC 5681, section 3.1), the window being at least
  :data:`MIN_WINDOW` commits. Without that floor a limit of 1 would climb back
  to 2 after a single clean commit: on a few hot rows, where one transaction
  at a time is what commits best, the gate then spent half its time at 2,
  where every second attempt conflicts, and a conflicting attempt costs a
  whole attempt (measured on the example app's hot transfers, 16 clients:
  0.39x the raw-asyncpg app's throughput with the floor at 1, 0.51x at 4;
  benchmarks/README.md). A gate that is not the bottleneck does not grow
  (Netflix concurrency-limits' "app-limited" rule: no evidence, no change).
- *Multiplicative decrease*: an attempt that ends in 40001 or 40P01 multiplies
  the limit by ``decrease_ratio`` (0.5, TCP Reno's halving), at most once per
  window: a conflict from an attempt admitted before the last decrease does not
  decrease again (it saw the old limit; TCP reacts once per round trip for the
  same reason). Without this, 64 attempts failing together would drive the
  limit to 1 in one burst.
- A commit that needed retries leaves the limit where it is.

``max_limit`` is the engine's pool capacity (``pool_size + max_overflow``;
:data:`UNBOUNDED_POOL_LIMIT` for a pool without a bound such as ``NullPool``):
the gate never admits more than the pool can serve, so it adds no wait the pool
would not impose, and a pool smaller than the limit cannot happen. The limit
starts at ``min(initial_limit, max_limit)``.

Why AIMD and not a latency gradient (TCP Vegas, concurrency-limits'
``Gradient2``): the signal here is explicit and exact (the server says
"conflict"), like ECN rather than delay, so there is no need to infer
congestion from latency, which on a shared machine moves for other reasons.

Why engine-wide: the only key known before a transaction runs is the engine
(and the callable, for ``run_transaction``); the rows a body touches are not
known until it has run. Conflicts cross callables (a transfer conflicts with a
balance update), so a per-callable gate would let them fight unchecked.

Queueing
--------
Waiters are served first in, first out. An attempt that is a *retry* joins
the head of the queue: it already paid for an abort, and serving it next keeps
the tail latency down (CockroachDB raises a retried transaction's priority for
the same reason). A slot is handed to the waiter directly (no barging): a
newcomer finds the gate full while anyone is queued. The queue is the
hand-off that key claims use too (:mod:`._handoff`); the gate keeps the count
(``in_flight``) and hands slots on while it is below the limit.

Cancellation: a cancelled waiter leaves the queue; a waiter cancelled just as
it was handed a slot passes the slot on (:mod:`._handoff`). No path leaks a
slot: the helpers release it in every exit of the attempt (commit, error,
cancellation), after the connection was returned to the pool.

The time spent queued counts against ``RetryPolicy.deadline_s`` (the deadline
runs from the call, before the first admission); a waiter still queued at the
deadline gets :class:`.RetriesExhaustedError`.

Nesting: an attempt that runs inside another attempt on the same engine (a
``run_transaction`` inside a ``run_transaction``, a ``retrying_session`` in
an outer ``run_transaction``) passes straight through: it already holds a slot,
and waiting for a second one could wait for itself. The mark is a context
variable, so tasks started inside an attempt (``asyncio.gather`` in a body)
inherit it and pass through as well: they run on the attempt's behalf.

Using it from another module (one line)
---------------------------------------
::

    from sqlalchemy_crdb_async.retry._admission import admission_for

    async with admission_for(engine).slot() as slot:
        await handle_request()          # any work that may conflict

On leaving the block the outcome is reported for you: no exception is a clean
success; an exception with SQLSTATE 40001 or 40P01 (or a ReplayMismatchError)
is a conflict; anything else leaves the limit alone. If the work catches the
conflict itself, report it first: ``slot.release(error)``, or
``slot.release(None, retried=True)`` for a success that needed retries (the
block's exit then does nothing more). ``slot(timeout_s=..., retry=True)``
bounds the wait (``asyncio.TimeoutError``) and queues a retry at the head.

Statistics: ``retry_stats(engine)`` shows ``admission_limit``,
``admission_in_flight``, ``admission_queued``, ``admission_waits`` and
``admission_wait_s`` (see :mod:`.stats`).
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import sqlstate as codes
from ..errors import ReplayMismatchError
from ._handoff import Handoff
from .classify import classify

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from sqlalchemy.engine import Engine

__all__ = [
    "MIN_WINDOW",
    "UNBOUNDED_POOL_LIMIT",
    "Admission",
    "AdmissionSettings",
    "Slot",
    "admission_for",
    "configure_admission",
    "is_conflict",
]

#: The ceiling of the limit when the pool has no bound (``NullPool``,
#: ``max_overflow=-1``).
UNBOUNDED_POOL_LIMIT = 64
#: The fewest clean commits that add one slot (see *Additive increase*).
MIN_WINDOW = 4.0


@dataclass(frozen=True)
class AdmissionSettings:
    """The gate's knobs (frozen, validated here)."""

    #: The limit a new gate starts at (capped by ``max_limit``).
    initial_limit: int = 4
    #: The ceiling; None: the pool's capacity (see the module docstring).
    max_limit: int | None = None
    #: The factor a conflict multiplies the limit by (once per window).
    decrease_ratio: float = 0.5

    def __post_init__(self) -> None:
        for name in ("initial_limit", "max_limit"):
            value = getattr(self, name)
            if value is None and name == "max_limit":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"AdmissionSettings.{name} must be an integer >= 1, got {value!r}"
                )
        ratio = self.decrease_ratio
        if (
            not isinstance(ratio, (int, float))
            or isinstance(ratio, bool)
            or not 0 < ratio < 1
        ):
            raise ValueError(
                "AdmissionSettings.decrease_ratio must be a number between 0 and 1 "
                f"(exclusive), got {ratio!r}"
            )


def pool_capacity(engine: Engine) -> int:
    """How many connections ``engine``'s pool can hand out at once."""
    pool: Any = engine.pool
    size = getattr(pool, "size", None)
    if not callable(size):
        # StaticPool and SingletonThreadPool share one connection; NullPool and
        # others open one per checkout, without a bound.
        if type(pool).__name__ in ("StaticPool", "SingletonThreadPool"):
            return 1
        return UNBOUNDED_POOL_LIMIT
    overflow = getattr(pool, "_max_overflow", 0)
    if not isinstance(overflow, int) or overflow < 0:
        return UNBOUNDED_POOL_LIMIT
    return max(1, int(size()) + overflow)


def is_conflict(error: BaseException | None) -> bool:
    """True for 40001, 40P01 and ReplayMismatchError: the signals to back off."""
    if error is None or not isinstance(error, Exception):
        return False
    if isinstance(error, ReplayMismatchError):
        return True
    sqlstate = classify(error, commit_sent=False).sqlstate
    return sqlstate in (codes.SERIALIZATION_FAILURE, codes.DEADLOCK_DETECTED)


# Gates the current task holds a slot of (by id): nested attempts pass through.
_held: ContextVar[frozenset[int]] = ContextVar(
    "sqlalchemy_crdb_async.admission", default=frozenset()
)


class Slot:
    """One admitted attempt; :meth:`release` it exactly once (idempotent)."""

    __slots__ = ("_outer", "epoch", "gate", "nested", "released")

    def __init__(self, gate: Admission, epoch: int, *, nested: bool) -> None:
        self.gate = gate
        self.epoch = epoch
        #: True for a pass-through slot (the task already held one).
        self.nested = nested
        self.released = False
        self._outer: frozenset[int] | None = None

    def conflicted(self) -> None:
        """Report a conflict while keeping the slot (a replay, say)."""
        if not self.nested and not self.released:
            self.gate._decrease(self)

    def step_aside(self) -> None:
        """Give the slot back reporting nothing: the attempt goes on outside
        the gate (it named its keys, :mod:`._claims`)."""
        if self.released:
            return
        self.released = True
        if self._outer is not None:
            _held.set(self._outer)
        if not self.nested:
            self.gate._give_back()

    def release(self, error: BaseException | None, *, retried: bool = False) -> None:
        """Give the slot back, reporting how the attempt ended.

        ``error`` None: committed (``retried`` says whether it took retries);
        a conflict (:func:`is_conflict`): the limit shrinks; anything else:
        no change.
        """
        if self.released:
            return
        self.released = True
        if self._outer is not None:
            _held.set(self._outer)
        if self.nested:
            return
        gate = self.gate
        if error is None:
            if not retried:
                gate._increase()
        elif is_conflict(error):
            gate._decrease(self)
        gate._give_back()


class Admission:
    """The gate of one engine; see the module docstring."""

    def __init__(self, max_limit: int, settings: AdmissionSettings) -> None:
        self.settings = settings
        self.max_limit = settings.max_limit or max_limit
        self.max_limit = max(1, min(self.max_limit, max_limit))
        self.limit = float(min(settings.initial_limit, self.max_limit))
        #: ``current_limit``, kept as the limit changes (read on every slot).
        self._cap = max(1, math.floor(self.limit))
        #: What the current task holds once it holds this gate (no set built
        #: per slot when it held no other gate, the common case).
        self._only_me = frozenset((id(self),))
        self.in_flight = 0
        self.epoch = 0
        self.waits = 0
        self.wait_s = 0.0
        self._handoff = Handoff()

    @property
    def current_limit(self) -> int:
        """How many attempts may hold a slot now: ``floor(limit)``."""
        return self._cap

    @property
    def queued(self) -> int:
        return self._handoff.queued

    # -- the limit --------------------------------------------------------------

    def _set_limit(self, limit: float) -> None:
        self.limit = limit
        self._cap = max(1, math.floor(limit))

    def _increase(self) -> None:
        handoff = self._handoff
        if self.in_flight >= self._cap or (handoff and handoff.queued):
            self._set_limit(
                min(
                    float(self.max_limit),
                    self.limit + 1.0 / max(self.limit, MIN_WINDOW),
                )
            )

    def _decrease(self, slot: Slot) -> None:
        if slot.epoch == self.epoch:
            self._set_limit(max(1.0, self.limit * self.settings.decrease_ratio))
            self.epoch += 1
            slot.epoch = -1  # the same attempt cannot decrease twice

    # -- slots ------------------------------------------------------------------

    def _give_back(self) -> None:
        self.in_flight -= 1
        if self._handoff:
            self._wake()

    def _wake(self) -> None:
        handoff = self._handoff
        while handoff and self.in_flight < self._cap and handoff.hand_next():
            self.in_flight += 1  # the slot is the waiter's from here

    def _enter(self, nested: bool, held: frozenset[int] | None = None) -> Slot:
        slot = Slot(self, self.epoch, nested=nested)
        if not nested:
            if held is None:
                held = _held.get()
            slot._outer = held
            _held.set(held | self._only_me if held else self._only_me)
        return slot

    def try_acquire(self) -> Slot | None:
        """A slot at once if one is free and nobody queues (or the task holds
        one already: a pass-through slot), else None: then :meth:`acquire`.
        The common case without a coroutine."""
        held = _held.get()
        if held and id(self) in held:
            return self._enter(nested=True)
        if not self._handoff and self.in_flight < self._cap:
            self.in_flight += 1
            return self._enter(nested=False, held=held)
        return None

    async def acquire(
        self, *, timeout_s: float | None = None, retry: bool = False
    ) -> Slot:
        """Wait for a slot (FIFO; a retry queues at the head); see :class:`Slot`.

        Raises ``asyncio.TimeoutError`` when ``timeout_s`` passes first.
        """
        slot = self.try_acquire()
        if slot is not None:
            return slot
        started = time.monotonic()
        try:
            # Handed a slot (counted in in_flight by _wake), or, leaving after
            # it was handed one, passes it on through _give_back.
            await self._handoff.wait(self._give_back, retry=retry, timeout_s=timeout_s)
        finally:
            self.waits += 1
            self.wait_s += time.monotonic() - started
        return self._enter(nested=False)

    def reenter(self) -> Slot:
        """A slot at once, over the limit if need be, for an attempt that was
        admitted and lent its slot while it waited for its keys
        (:mod:`._claims`): it must not queue again, or it could wait for a
        slot held by an attempt that waits for the pool connection it holds."""
        if id(self) in _held.get():
            return self._enter(nested=True)
        self.in_flight += 1
        return self._enter(nested=False)

    @asynccontextmanager
    async def slot(
        self, *, timeout_s: float | None = None, retry: bool = False
    ) -> AsyncIterator[Slot]:
        """``async with gate.slot() as slot:``: hold a slot for the block.

        Leaving the block releases it with the block's outcome, unless
        ``slot.release()`` was called inside.
        """
        held = await self.acquire(timeout_s=timeout_s, retry=retry)
        try:
            yield held
        except BaseException as error:
            held.release(error)
            raise
        held.release(None)


_gates: weakref.WeakKeyDictionary[Engine, Admission] = weakref.WeakKeyDictionary()
_gates_lock = threading.Lock()


#: The engine whose gate was asked for last (a weak reference) and that gate:
#: the next attempt of the same engine finds it without the lock and the weak
#: dictionary's lookup (which makes a weak reference every time).
_last: tuple[Callable[[], Engine | None], Admission | None] = (lambda: None, None)


def admission_for(engine: Any) -> Admission:
    """The admission gate of ``engine`` (AsyncEngine or Engine), made on first use."""
    global _last  # the one-entry cache above
    sync_engine: Engine = getattr(engine, "sync_engine", engine)
    last_engine, last_gate = _last
    if last_gate is not None and last_engine() is sync_engine:
        return last_gate
    with _gates_lock:
        gate = _gates.get(sync_engine)
        if gate is None:
            gate = _gates[sync_engine] = Admission(
                pool_capacity(sync_engine), AdmissionSettings()
            )
        _last = (weakref.ref(sync_engine), gate)
        return gate


def configure_admission(engine: Any, settings: AdmissionSettings) -> Admission:
    """Replace ``engine``'s gate with a new one built from ``settings``.

    Attempts holding or awaiting a slot of the old gate finish on it.
    """
    global _last  # admission_for's cache: the new gate from now on
    if not isinstance(settings, AdmissionSettings):
        raise TypeError(
            "configure_admission() takes AdmissionSettings, got "
            f"{type(settings).__name__}"
        )
    sync_engine: Engine = getattr(engine, "sync_engine", engine)
    with _gates_lock:
        gate = _gates[sync_engine] = Admission(pool_capacity(sync_engine), settings)
        _last = (weakref.ref(sync_engine), gate)
        return gate


def peek(engine: Engine) -> Admission | None:
    """The gate of ``engine`` if it has one (for statistics)."""
    with _gates_lock:
        return _gates.get(engine)
