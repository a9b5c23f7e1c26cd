"""Key claims: attempts that name their hot rows queue for them in process.

:func:`claim_keys` is called inside an attempt (a :func:`.run_transaction` or
:func:`.retrying` body, a :func:`.retrying_session` block, a
:class:`~sqlalchemy_crdb_async.fastapi.RetryingRoute` endpoint once it holds
a writing session or connection) with the keys of the rows the transaction
is about to touch::

    async def transfer(conn):
        await claim_keys(conn, ("account", src), ("account", dst))
        ...                                  # read and write both accounts

Attempts of this process that share a key then run one at a time; attempts
with no key in common run side by side. A claim holds until its attempt has
committed or rolled back and its connection is back in the pool, so the next
one reads what the previous one wrote.

Why
---
Two transactions on the same rows cannot both commit at SERIALIZABLE. Sent
together, one waits for the other's row lock and then, on PostgreSQL, fails
with 40001 when it gets it; on CockroachDB it waits in the lock's wait-queue
or is pushed and retried. Either way a whole attempt is spent, and the
client's CPU and the server's work go to an attempt that could not commit.
The admission gate (:mod:`._admission`) cuts that waste without knowing the
rows: it lowers how many transactions an engine runs at once, which also
holds back the transactions that would not have conflicted. Keys say which
ones would. Claimed, the conflicts on those rows never reach the server, so
the gate's limit is set by what is left (rows nobody named, PostgreSQL's
serializable snapshot conflicts), which is little, and it grows.

All keys at once
----------------
An attempt takes all its keys together, when none of them is held, or waits
holding none. (Taking them one at a time in a fixed order, the usual way to
avoid deadlock, makes an attempt that holds key A while it waits for key B
block every attempt on A: on 10 hot accounts and 16 clients, about 2.5
transfers run at once that way against 3.6 this way, in a model of equal
transactions, ``python -m benchmarks.claims_model``.) When keys come back, the
waiters are looked at in order (retries first, then by arrival) and every
one whose keys are all free is handed them and starts (a waiter cancelled
just as it was handed its keys passes them on: the waiter's side of
:mod:`._handoff`, which the admission gate's queue uses too). A waiter
that later waiters overtook :data:`MAX_OVERTAKEN` times reserves its keys: no
later attempt takes them first, so a transfer between two busy accounts is
not starved by transfers that each touch only one of them. A retry reserves
its keys at once: it already paid for an abort, as at the admission gate.

Nothing waits in a circle: an attempt holding keys waits for no key (one
claim per attempt); an attempt waiting for keys holds none, and lends its
gate slot to the next attempt while it waits (nothing is reported to the
gate), taking a slot back at once when it has its keys, even over the limit:
it was admitted already, and queueing again could make it wait for a slot
held by an attempt that waits for the pool connection it holds. A session
checks its connection out before its keys are claimed, so an attempt holding
keys never waits for the pool.

Rules
-----
- Claim every key in one call, before the statements that touch the rows;
  a second call in the same attempt raises ``InvalidRequestError``.
- A key is any hashable value; include the table's name, ``("account", id)``,
  so that keys of different tables do not collide.
- The claims live per engine, in this process, on one event loop. Other
  processes still meet on the server, where their conflicts are retried as
  ever; claims make no promise across processes.
- Waiting for a claim counts against ``RetryPolicy.deadline_s`` (the
  attempt's deadline timer cancels the wait) and is cancellable; the keys
  are given back when the attempt ends, however it ends.
- Claim in the outermost attempt: a nested attempt (a helper called inside
  another one's body) cannot claim. A sync helper
  (``sqlalchemy_crdb_async.sync``) has no claims; there, in a nested attempt
  and outside any attempt, :func:`claim_keys` raises ``InvalidRequestError``.

Statistics: ``retry_stats(engine).claim_waits`` counts the claims that had
to wait for another attempt.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from contextlib import suppress
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final, Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.util import greenlet_spawn

from ._handoff import wait_handed

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from sqlalchemy.engine import Engine

__all__ = ["Attempting", "Claims", "claim_keys", "current_attempt"]


class _Counting(Protocol):
    def add(self, name: str, n: int = 1) -> None: ...


class Attempting(Protocol):
    """What a claim needs of the running attempt (``_loop.AttemptLoop``)."""

    attempt_open: bool
    claims: Claims | None
    #: The attempt's number, 1 for the first.
    number: int

    @property
    def engine(self) -> Engine | None: ...
    @property
    def counters(self) -> _Counting: ...

    @property
    def nested(self) -> bool: ...
    def step_aside(self) -> None: ...
    def step_back(self) -> None: ...


#: The attempt the current task is running (set by ``AttemptLoop.admit``;
#: valid while its ``attempt_open``).
current_attempt: ContextVar[Attempting | None] = ContextVar(
    "sqlalchemy_crdb_async.attempt", default=None
)

#: How often later attempts may take a waiting attempt's keys before it
#: reserves them (see "All keys at once"); 8 kept the simulated overtaking
#: within a few transactions' time while losing little of the side by side.
MAX_OVERTAKEN: Final = 8


class Claims:
    """The keys one attempt claimed: held, or waited for; given back by
    :meth:`release`."""

    __slots__ = ("_table", "held", "keys", "overtaken", "retry", "waiter")

    def __init__(self, table: _Table, keys: frozenset[Hashable], retry: bool) -> None:
        self._table = table
        self.keys = keys
        #: The attempt holds its keys (it took them, or was handed them).
        self.held = False
        #: A retry: waits ahead of first tries and reserves its keys at once.
        self.retry = retry
        #: How often a later attempt took one of its keys while it waited.
        self.overtaken = MAX_OVERTAKEN if retry else 0
        self.waiter: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        """Wait until the table hands this attempt its keys (the waiter's side
        of :mod:`._handoff`: handed the keys while leaving, it passes them on;
        else it leaves the queue)."""
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        table = self._table
        table.enqueue(self)
        try:
            await wait_handed(waiter, self.release, lambda _: table.dequeue(self))
        finally:
            self.waiter = None

    def release(self) -> None:
        """Give the keys back (idempotent); the waiters they free start."""
        if self.held:
            self.held = False
            self._table.give_back(self)


class _Table:
    """The claims of one engine: the keys held, and the attempts waiting."""

    __slots__ = ("held", "waiting")

    def __init__(self) -> None:
        #: Each held key's claim.
        self.held: dict[Hashable, Claims] = {}
        #: Waiting claims in the order they are served: retries, then first
        #: tries, each by arrival.
        self.waiting: list[Claims] = []

    def take_now(self, claims: Claims) -> bool:
        """Take every key of ``claims`` if none is held (or reserved by a
        waiter); True when taken."""
        held = self.held
        keys = claims.keys
        if not held.keys().isdisjoint(keys):
            return False
        waiting = self.waiting
        if waiting:
            overtaken = []
            for other in waiting:
                if not other.keys.isdisjoint(keys):
                    if other.overtaken >= MAX_OVERTAKEN:
                        return False  # reserved
                    overtaken.append(other)
            for other in overtaken:
                other.overtaken += 1
        for key in keys:
            held[key] = claims
        claims.held = True
        return True

    def enqueue(self, claims: Claims) -> None:
        waiting = self.waiting
        if claims.retry:
            at = 0
            while at < len(waiting) and waiting[at].retry:
                at += 1
            waiting.insert(at, claims)
        else:
            waiting.append(claims)

    def dequeue(self, claims: Claims) -> None:
        with suppress(ValueError):
            self.waiting.remove(claims)

    def give_back(self, claims: Claims) -> None:
        held = self.held
        for key in claims.keys:
            if held.get(key) is claims:
                del held[key]
        if self.waiting:
            self._hand_out()

    def _hand_out(self) -> None:
        """Start, in order, every waiter whose keys are all free; a waiter
        that cannot start and was overtaken enough reserves its keys."""
        held = self.held
        reserved: set[Hashable] = set()
        still: list[Claims] = []
        for claims in self.waiting:
            keys = claims.keys
            waiter = claims.waiter
            if waiter is None or waiter.done():
                continue  # cancelled: it leaves on its own
            if held.keys().isdisjoint(keys) and reserved.isdisjoint(keys):
                for key in keys:
                    held[key] = claims
                claims.held = True
                waiter.set_result(None)
                for earlier in still:
                    if not earlier.keys.isdisjoint(keys):
                        earlier.overtaken += 1
                continue
            if claims.overtaken >= MAX_OVERTAKEN:
                reserved.update(keys)
            still.append(claims)
        self.waiting = still


_tables: weakref.WeakKeyDictionary[Engine, _Table] = weakref.WeakKeyDictionary()
_tables_lock = threading.Lock()
#: The table of attempts with no engine (a route whose error came first).
_no_engine = _Table()


#: The engine whose table was asked for last (a weak reference; before the
#: first, a function answering no engine), and that table: an attempt of the
#: same engine finds it through the reference's call, without the weak
#: dictionary's lookup (which makes a weak reference every time).
_last: tuple[Callable[[], Engine | None], _Table] = (lambda: None, _no_engine)


def _table_for(engine: Engine | None) -> _Table:
    global _last  # the one-entry cache above
    if engine is None:
        return _no_engine
    last_engine, table = _last
    if last_engine() is engine:  # never None here: a dead reference is no match
        return table
    found = _tables.get(engine)  # a read needs no lock (made once, never replaced)
    if found is None:
        with _tables_lock:
            found = _tables.get(engine)
            if found is None:
                found = _tables[engine] = _Table()
    _last = (weakref.ref(engine), found)
    return found


async def claim_keys(
    handle: AsyncConnection | AsyncSession, /, *keys: Hashable
) -> None:
    """Queue this attempt behind the attempts of this process that claimed
    one of ``keys``, until its transaction ends; see the module docstring.

    ``handle`` is the attempt's ``AsyncConnection`` or ``AsyncSession`` (a
    session checks its connection out first, so that an attempt holding keys
    never waits for the pool). Raises ``InvalidRequestError`` outside an
    attempt, in a nested one, on a second claim in one attempt, and with no
    keys; ``TypeError`` for an unhashable key.
    """
    loop = current_attempt.get()
    if loop is None or not loop.attempt_open:
        raise sa_exc.InvalidRequestError(
            "claim_keys() runs inside an attempt: a run_transaction() or "
            "retrying() body, a retrying_session() block, or a RetryingRoute "
            "endpoint with a writing session or connection (a read-only one "
            "takes no claims)."
        )
    if loop.nested:
        raise sa_exc.InvalidRequestError(
            "claim_keys() in an attempt nested in another one: claim the keys "
            "in the outermost attempt (an inner claim could wait for a key while "
            "the outer attempt holds what the key's holder waits for)."
        )
    if not keys:
        raise sa_exc.InvalidRequestError(
            "claim_keys() needs at least one key, e.g. "
            "claim_keys(conn, ('account', id))"
        )
    if loop.claims is not None:
        raise _claimed_twice()
    try:
        unique = frozenset(keys)
    except TypeError:
        bad = next(k for k in keys if not _hashable(k))
        raise TypeError(
            f"claim_keys(): a key must be hashable, got {type(bad).__name__} "
            f"{bad!r}; use a tuple such as ('account', id)"
        ) from None
    if isinstance(handle, AsyncSession):
        # The session's connection, checked out (AsyncSession.connection()
        # does the same and then builds an AsyncConnection for it, unused here).
        await greenlet_spawn(handle.sync_session.connection)
        if loop.claims is not None:  # a claim of this attempt in another task
            raise _claimed_twice()
    elif not isinstance(handle, AsyncConnection):
        raise TypeError(
            "claim_keys(): the first argument is the attempt's AsyncConnection or "
            f"AsyncSession, got {type(handle).__name__}"
        )
    table = _table_for(loop.engine)
    loop.claims = claims = Claims(table, unique, loop.number > 1)
    if table.take_now(claims):
        return
    # A key is held (or reserved) by another attempt: lend the admission slot
    # while waiting, and take one back at once after (see the module
    # docstring).
    loop.counters.add("claim_waits")
    loop.step_aside()
    try:
        await claims.wait()
    finally:
        loop.step_back()


def _claimed_twice() -> sa_exc.InvalidRequestError:
    return sa_exc.InvalidRequestError(
        "claim_keys() was already called in this attempt; claim every key "
        "in one call (keys claimed one call at a time could make two "
        "attempts wait for each other)."
    )


def _hashable(key: object) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True
