"""Key claims: attempts that name their hot rows queue for them in process.

:func:`claim_keys` is called inside an attempt (a :func:`.run_transaction` or
:func:`.retrying` body, a :func:`.retrying_session` block, a
:class:`~sqlalchemy_crdb_async.fastapi.RetryingRoute` endpoint once it holds
a writing session or connection) with the keys of the rows the transaction
is about to touch::

    async def transfer(conn):
        await claim_keys(conn, ("account", src), ("account", dst))
        ...                                  # read and write both accounts

Attempts of this process that share a key then run one at a time, in the
order they claimed (a retry first: it already paid for an abort, as at the
admission gate); attempts with no key in common run side by side. A claim
holds until its attempt has committed or rolled back and its connection is
back in the pool, so the next one reads what the previous one wrote.

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
serializable snapshot conflicts), which is little, and it grows: attempts on
different rows run side by side, those on the same row one after the other.
An attempt that must wait for a key lends its gate slot to the next attempt
while it waits (nothing is reported to the gate) and takes a slot back at
once when it has its keys, even over the limit: it was admitted already, and
queueing again could make it wait for a slot held by an attempt that waits
for the pool connection it holds. A session checks its connection out before
its keys are claimed, so an attempt holding keys never waits for the pool;
an attempt holding a slot waits for no key. Nothing can wait in a circle.

Rules
-----
- Claim every key in one call, before the statements that touch the rows.
  The keys are taken in one fixed order (the order their entries were
  made), so two attempts never wait for each other; a second call in the
  same attempt could break that order and raises ``InvalidRequestError``.
- A key is any hashable value; include the table's name, ``("account", id)``,
  so that keys of different tables do not collide.
- The claims live per engine, in this process, on one event loop. Other
  processes still meet on the server, where their conflicts are retried as
  ever; claims make no promise across processes.
- Waiting for a claim counts against ``RetryPolicy.deadline_s`` (the
  attempt's deadline timer cancels the wait) and is cancellable; the keys
  taken so far are given back when the attempt ends, however it ends.
- Claim in the outermost attempt: a nested attempt (a helper called inside
  another one's body) cannot claim. A sync helper
  (``sqlalchemy_crdb_async.sync``) has no claims; there, in a nested attempt
  and outside any attempt, :func:`claim_keys` raises ``InvalidRequestError``.

Statistics: ``retry_stats(engine).claim_waits`` counts the claims that had
to wait for another attempt.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import weakref
from collections import deque
from contextlib import suppress
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

if TYPE_CHECKING:
    from collections.abc import Hashable

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

_order = itertools.count()


class _Entry:
    """One key: whether an attempt holds it, who waits for it (first in, first
    out; handed to the next waiter directly, no barging), and how many
    attempts hold or wait for it."""

    __slots__ = ("held", "key", "order", "users", "waiters")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.held = False
        self.waiters: deque[asyncio.Future[None]] = deque()
        #: The fixed order in which claims take keys (see Rules).
        self.order = next(_order)
        self.users = 0

    def take_now(self) -> bool:
        if self.held or self.waiters:
            return False
        self.held = True
        return True

    async def take(self, *, retry: bool) -> None:
        if self.take_now():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if retry:
            self.waiters.appendleft(waiter)
        else:
            self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed the key while leaving: pass it on
            else:
                waiter.cancel()
                with suppress(ValueError):
                    self.waiters.remove(waiter)
            raise

    def give_back(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # still held: now by that waiter
                return
        self.held = False


class _Table:
    """The claimable keys of one engine: an entry per key in use."""

    def __init__(self) -> None:
        self.entries: dict[Hashable, _Entry] = {}

    def entry(self, key: Hashable) -> _Entry:
        found = self.entries.get(key)
        if found is None:
            found = self.entries[key] = _Entry(key)
        found.users += 1
        return found

    def done_with(self, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0 and self.entries.get(entry.key) is entry:
            del self.entries[entry.key]


_tables: weakref.WeakKeyDictionary[Engine, _Table] = weakref.WeakKeyDictionary()
_tables_lock = threading.Lock()
#: The table of attempts with no engine (a route whose error came first).
_no_engine = _Table()


def _table_for(engine: Engine | None) -> _Table:
    if engine is None:
        return _no_engine
    found = _tables.get(engine)  # a read needs no lock (made once, never replaced)
    if found is not None:
        return found
    with _tables_lock:
        table = _tables.get(engine)
        if table is None:
            table = _tables[engine] = _Table()
        return table


class Claims:
    """The keys one attempt claimed; given back by :meth:`release`."""

    __slots__ = ("_held", "_table", "_waiting")

    def __init__(self, table: _Table, entries: list[_Entry]) -> None:
        self._table = table
        #: Entries whose lock this attempt holds.
        self._held: list[_Entry] = []
        #: Entries it still waits for (counted as users until given back).
        self._waiting = entries

    def take_now(self) -> bool:
        """Take the keys, in order, that are free; True when that was all."""
        waiting = self._waiting
        while waiting and waiting[0].take_now():
            self._held.append(waiting.pop(0))
        return not waiting

    async def take(self, *, retry: bool) -> None:
        """Take the remaining keys in order, waiting for each (a ``retry`` at
        the head of each key's queue)."""
        while self._waiting:
            await self._waiting[0].take(retry=retry)
            self._held.append(self._waiting.pop(0))

    def release(self) -> None:
        """Give every key back (idempotent); the next claimer of each runs."""
        table = self._table
        held, self._held = self._held, []
        waiting, self._waiting = self._waiting, []
        for entry in held:
            entry.give_back()
            table.done_with(entry)
        for entry in waiting:
            table.done_with(entry)


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
        raise sa_exc.InvalidRequestError(
            "claim_keys() was already called in this attempt; claim every key "
            "in one call (keys claimed one call at a time could make two "
            "attempts wait for each other)."
        )
    try:
        unique = set(keys)
    except TypeError:
        bad = next(k for k in keys if not _hashable(k))
        raise TypeError(
            f"claim_keys(): a key must be hashable, got {type(bad).__name__} "
            f"{bad!r}; use a tuple such as ('account', id)"
        ) from None
    if isinstance(handle, AsyncSession):
        await handle.connection()
    elif not isinstance(handle, AsyncConnection):
        raise TypeError(
            "claim_keys(): the first argument is the attempt's AsyncConnection or "
            f"AsyncSession, got {type(handle).__name__}"
        )
    table = _table_for(loop.engine)
    entries = sorted([table.entry(key) for key in unique], key=_by_order)
    loop.claims = claims = Claims(table, entries)
    if claims.take_now():
        return
    # A key is held by another attempt: lend the admission slot while waiting
    # for it, and take one back at once after (see the module docstring).
    loop.counters.add("claim_waits")
    loop.step_aside()
    try:
        await claims.take(retry=loop.number > 1)
    finally:
        loop.step_back()


def _by_order(entry: _Entry) -> int:
    return entry.order


def _hashable(key: object) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True
