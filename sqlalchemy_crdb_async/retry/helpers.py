"""Transaction retries for asyncio: :func:`run_transaction` and :func:`retrying`.

CockroachDB runs every transaction SERIALIZABLE and asks the client to retry
when transactions conflict (SQLSTATE 40001, "restart transaction"). These
helpers do that for you::

    from sqlalchemy_crdb_async import RetryPolicy, retrying, run_transaction

    async def transfer(session: AsyncSession) -> None:
        a = await session.get(Account, 1)
        b = await session.get(Account, 2)
        a.balance -= 10
        b.balance += 10

    await run_transaction(Session, transfer)             # Session: async_sessionmaker

    async for attempt in retrying(engine, policy=RetryPolicy(max_attempts=5)):
        async with attempt as conn:                      # one transaction per attempt
            await conn.execute(text("UPDATE ..."))

Targets: an ``AsyncEngine`` or ``AsyncConnection`` (the work gets an
``AsyncConnection``), an ``async_sessionmaker`` or ``AsyncSession`` (the work gets
an ``AsyncSession``). Each attempt is a fresh transaction: a new connection or
session from an engine or sessionmaker; a new transaction on a given connection
or session (which must have none in progress). The work may run more than once,
so it must not have effects outside the transaction that cannot be repeated.
Use :func:`.retrying_session` to run a body exactly once and replay its
statements instead.

What is retried (see :mod:`.classify`): 40001 and 40P01; a cached-plan error
(0A000 from ``RevalidateCachedQuery``) after the prepared-statement cache is
cleared; a lost connection (class 08, 57P01) and CockroachDB's transient 58C00
/ 58C01 / 53300 *before* COMMIT was sent. A lost connection or a transient
error *after* COMMIT was sent, or 40003, raises
:class:`.AmbiguousCommitError`, unless ``idempotent=True``, in which case it is
retried too. A statement or lock timeout that fires (57014, 55P03) is raised,
not retried. Everything else (including cancellation) propagates unchanged, at
once. When the policy's attempts run out, :class:`.RetriesExhaustedError` is
raised from the last error.

The deadline (``RetryPolicy.deadline_s``) bounds the whole call, wall-clock
from entry to return: admission, connecting, every attempt, every backoff and
the cleanup. An attempt still running when it passes is cancelled: the task is
cancelled wherever it awaits (a statement, a lock wait, the connect, the
block's own awaits), asyncpg sends the server a cancel request for a running
statement, and the transaction is rolled back or its connection closed, so no
lock waited for is taken afterwards and no session stays idle in transaction.
Then :class:`.DeadlineExceededError` (a :class:`.RetriesExhaustedError`,
``bound == "deadline_s"``) is raised, or :class:`.AmbiguousCommitError` when
COMMIT was in flight. The call returns within ``deadline_s`` plus about 0.5 s
of cleanup (:mod:`._deadline`); measured overshoot: benchmarks/README.md.

Admission: every attempt first takes a slot of the engine's
contention-adaptive gate (:mod:`._admission`): the number of attempts in
flight per engine halves on 40001/40P01 and grows while attempts commit first
time, between 1 and the pool's size; waiters queue first in, first out (a
retry at the head), and the wait counts against ``RetryPolicy.deadline_s``.
``RetryPolicy(admission=False)`` skips the gate.

Rules the helpers keep:

- They sleep with ``asyncio.sleep`` only, and only after the transaction was
  rolled back and its connection returned, so nothing is held while waiting.
- Cleanup (rollback, close) runs as one task awaited through repeated
  cancellation, bounded (:mod:`sqlalchemy_crdb_async._cleanup`); a cancelled task
  leaves no open transaction and no checked-out connection.
- A retry happens on a *new transaction*, not a savepoint: on CockroachDB the
  ``SAVEPOINT cockroach_restart`` protocol would keep the transaction's
  priority, but it keeps the transaction open while backing off. Use
  :func:`.retrying_session` for the savepoint protocol.
- Let database errors leave the body: a ``try/except`` inside it that swallows
  a 40001 defeats the retry (PostgreSQL answers COMMIT of an aborted
  transaction with a silent ROLLBACK, so the work would be lost, not retried).

See also: :mod:`.replay` (``retrying_session``), :mod:`.sync` (sync API),
:mod:`.policy` (``RetryPolicy``), :func:`.retry_stats`; CockroachDB's guide,
https://www.cockroachlabs.com/docs/stable/transaction-retry-error-reference.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar, overload

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from typing_extensions import Self

from ..errors import AmbiguousCommitError
from ._loop import AttemptLoop
from ._scopes import scope_class, sync_engine_of
from .classify import ErrorKind

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
    from types import TracebackType

    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
        AsyncSession,
        async_sessionmaker,
    )

    from ._scopes import _Scope
    from .policy import RetryPolicy

__all__ = ["Attempt", "RetryTarget", "retrying", "run_transaction"]

_T = TypeVar("_T")
#: What the async retry helpers accept: an engine or connection (the work gets
#: an ``AsyncConnection``) or a sessionmaker or session (it gets an
#: ``AsyncSession``).
RetryTarget: TypeAlias = (
    "AsyncEngine | AsyncConnection | async_sessionmaker[Any] | AsyncSession"
)
log = logging.getLogger("sqlalchemy_crdb_async.retry")


class Attempt:
    """One attempt of :func:`retrying`: ``async with attempt as s`` runs it.

    ``s`` is an ``AsyncConnection`` or ``AsyncSession`` in a new transaction,
    committed when the block ends without error. ``number`` is 1 for the first
    attempt. An attempt can be entered once.
    """

    def __init__(self, owner: _Retrying, number: int) -> None:
        self._owner = owner
        #: 1 for the first attempt.
        self.number = number
        self.entered = False
        self.exited = False

    async def __aenter__(self) -> Any:
        if self.entered:
            raise RuntimeError("retrying(): an attempt can be entered only once")
        self.entered = True
        timer = self._owner.loop.timer
        timer.arm()  # the deadline cancels the attempt from here (._deadline)
        try:
            return await self._owner.open()
        except asyncio.CancelledError:
            if timer.disarm():
                self._owner.done = True
                raise self._owner.loop.deadline_error(
                    "while waiting for admission or connecting"
                ) from None
            raise
        except BaseException:
            timer.disarm()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.exited = True
        owner = self._owner
        try:
            handled = await owner.finish(exc)
        except BaseException as error:
            if owner.loop.timer.disarm():
                if owner.scope is not None and owner.scope.committed:
                    # COMMIT succeeded; the deadline passed during the close
                    owner.loop.committed()
                    return False
                cause = exc if isinstance(exc, Exception) else error
                raise owner.deadline_error(cause) from None
            raise
        if owner.loop.timer.disarm() and isinstance(exc, asyncio.CancelledError):
            raise owner.deadline_error(exc) from None
        return handled


class _Retrying:
    def __init__(
        self,
        target: RetryTarget,
        policy: RetryPolicy | None,
        idempotent: bool,
        api: str,
    ) -> None:
        self.target = target
        self.loop = AttemptLoop(
            policy, sync_engine_of(target, api), idempotent=idempotent, api=api
        )
        self.scope_class = scope_class(target)
        self.scope: _Scope | None = None
        self.current: Attempt | None = None
        self.sleep_s = 0.0
        self.done = False

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> NoReturn:
        # `async with retrying(...)` is a common slip: say the right form.
        raise TypeError(
            f"{self.loop.api}() is an async iterator of attempts, not a context "
            "manager: write `async for attempt in retrying(target):` and then "
            "`async with attempt as conn_or_session:` inside the loop (or use "
            "`async with retrying_session(...) as session:` for one block)."
        )

    async def __aexit__(self, *exc_info: object) -> None:  # pragma: no cover
        return None  # never reached: __aenter__ raises

    async def __anext__(self) -> Attempt:
        if self.done:
            raise StopAsyncIteration
        current = self.current
        if current is not None:
            if not current.entered or not current.exited:
                self.done = True
                raise RuntimeError(
                    f"{self.loop.api}(): attempt {current.number} was not run; write "
                    "`async with attempt as s:` as the body of the loop."
                )
            await asyncio.sleep(self.sleep_s)
        self.current = Attempt(self, self.loop.start())
        return self.current

    async def open(self) -> Any:
        # A failure before the body runs (connecting, BEGIN) is retried here,
        # since the body of `async with` cannot be skipped and re-run.
        while True:
            try:
                await self.loop.admit()
            except BaseException:
                self.done = True
                raise
            self.scope = scope = self.scope_class(self.target, self.loop)
            try:
                return await scope.open()
            except BaseException as error:
                try:
                    await scope.abort()
                finally:
                    self.loop.release(error)
                if not isinstance(error, Exception) or not self._decide(error, False):
                    self.done = True
                    raise
            await asyncio.sleep(self.sleep_s)
            assert self.current is not None
            self.current.number = self.loop.start()

    async def finish(self, error: BaseException | None) -> bool:
        scope = self.scope
        assert scope is not None
        if error is None:
            try:
                await scope.commit()
            except Exception as commit_error:
                await self._abort(scope, commit_error)
                if self._decide(commit_error, scope.commit_sent):
                    return True
                raise
            except BaseException as cancelled:  # cancelled during COMMIT
                await self._abort(scope, cancelled)
                self.done = True
                raise
            self.loop.release(None)
            self.loop.committed()
            self.done = True
            return False
        await self._abort(scope, error)
        if isinstance(error, Exception) and self._decide(error, scope.commit_sent):
            return True
        self.done = True
        return False

    async def _abort(self, scope: _Scope, error: BaseException) -> None:
        # The connection goes back to the pool before the slot is handed on.
        try:
            await scope.abort()
        finally:
            self.loop.release(error)

    def deadline_error(self, error: BaseException) -> BaseException:
        """What to raise when the deadline cancelled the current attempt."""
        self.done = True
        scope = self.scope
        if scope is not None and scope.commit_sent:
            where = "while COMMIT was in flight"
            if not self.loop.idempotent:
                self.loop.counters.add("ambiguous")
                return AmbiguousCommitError(
                    f"{self.loop.api}(): RetryPolicy.deadline_s="
                    f"{self.loop.policy.deadline_s} passed while COMMIT was in "
                    "flight; the attempt was cancelled, so the transaction may or "
                    "may not have committed. Check the data, or pass "
                    "idempotent=True if running the work twice is harmless."
                )
        elif isinstance(error, Exception):
            # the block failed and its rollback was cut short: keep its error
            where = f"while rolling back after {type(error).__name__}"
            return self.loop.deadline_error(where, error)
        else:
            where = "while the attempt's block ran"
        return self.loop.deadline_error(where)

    def _decide(self, error: Exception, commit_sent: bool) -> bool:
        try:
            decision = self.loop.next_sleep(error, commit_sent=commit_sent)
        except BaseException:
            self.done = True
            raise
        if decision is None:
            self.done = True
            return False
        self.sleep_s, verdict = decision
        if verdict.kind is ErrorKind.RETRY_AFTER_CACHE_CLEAR:
            self.loop.clear_statement_cache()
        return True


@overload
def retrying(
    target: AsyncEngine | AsyncConnection,
    *,
    policy: RetryPolicy | None = ...,
    idempotent: bool = ...,
) -> AsyncIterator[Attempt]: ...
@overload
def retrying(
    target: async_sessionmaker[Any] | AsyncSession,
    *,
    policy: RetryPolicy | None = ...,
    idempotent: bool = ...,
) -> AsyncIterator[Attempt]: ...
def retrying(
    target: RetryTarget, *, policy: RetryPolicy | None = None, idempotent: bool = False
) -> AsyncIterator[Attempt]:
    """Yield :class:`Attempt` objects until one commits: a retry loop you write.

    Accepts: ``target``, an ``AsyncEngine`` or ``AsyncConnection`` (each attempt
    gives an ``AsyncConnection``) or an ``async_sessionmaker`` or
    ``AsyncSession`` (each attempt gives an ``AsyncSession``); a given
    connection or session must have no transaction in progress. ``policy``
    (:class:`RetryPolicy`, default ``RetryPolicy()``) bounds the attempts, the
    deadline and the backoff; ``idempotent=True`` also retries a commit whose
    outcome is unknown.

    Each ``async with attempt as s:`` runs one attempt in a new transaction and
    commits it when the block ends without error. A retryable error leaving the
    block is swallowed by it, the transaction is rolled back and the connection
    returned, and the loop sleeps (``asyncio.sleep``) and runs again; the loop
    ends after the commit.

    Retries: SQLSTATE 40001 (CockroachDB's "restart transaction") and 40P01, a
    cached-plan 0A000 (after clearing the statement cache), a connection lost
    before COMMIT was sent (class 08, 57P01), and CockroachDB's transient
    58C00 (range unavailable), 58C01 (failed connection between its nodes)
    and 53300 (too many connections, at connect) before COMMIT was sent. A
    statement or lock timeout that fires (57014, 55P03) is raised, not retried.

    Bounded: the deadline covers the whole loop, from the call to the end of
    the last attempt, the body of each ``async with attempt`` included; an
    attempt running at the deadline is cancelled, its statement cancelled on
    the server and its transaction rolled back (module docstring).

    Raises: :class:`.RetriesExhaustedError` (from the last error) when the
    policy's attempts run out, :class:`.DeadlineExceededError` (a subclass)
    when its deadline does; :class:`.AmbiguousCommitError` when the
    connection is lost after COMMIT was sent, or on 40003, unless
    ``idempotent=True``; every other error, and cancellation, unchanged and at
    once; ``RuntimeError`` if the loop body does not enter its attempt;
    ``TypeError`` for ``async with retrying(...)`` (write ``async for``).

    Example::

        from sqlalchemy import text

        from sqlalchemy_crdb_async import RetryPolicy, retrying

        async for attempt in retrying(engine, policy=RetryPolicy(max_attempts=5)):
            async with attempt as conn:
                await conn.execute(
                    text("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
                )
                await conn.execute(
                    text("UPDATE accounts SET balance = balance + 10 WHERE id = 2")
                )
    """
    check_async_target(target, "retrying")
    return _Retrying(target, policy, idempotent, "retrying")


@overload
def run_transaction(
    target: AsyncEngine | AsyncConnection,
    fn: Callable[[AsyncConnection], Awaitable[_T]],
    *,
    policy: RetryPolicy | None = ...,
    idempotent: bool = ...,
) -> Coroutine[Any, Any, _T]: ...
@overload
def run_transaction(
    target: async_sessionmaker[Any] | AsyncSession,
    fn: Callable[[AsyncSession], Awaitable[_T]],
    *,
    policy: RetryPolicy | None = ...,
    idempotent: bool = ...,
) -> Coroutine[Any, Any, _T]: ...
def run_transaction(
    target: RetryTarget,
    fn: Callable[[Any], Awaitable[_T]],
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
) -> Coroutine[Any, Any, _T]:
    """Await ``fn(conn_or_session)`` in a transaction, retrying it; return its result.

    Accepts: ``target``, an ``AsyncEngine`` or ``AsyncConnection`` (``fn`` gets an
    ``AsyncConnection``) or an ``async_sessionmaker`` or ``AsyncSession``
    (``fn`` gets an ``AsyncSession``); a given connection or session must have
    no transaction in progress. ``fn`` is an async function of that one
    argument. ``policy`` (:class:`RetryPolicy`, default ``RetryPolicy()``)
    bounds the attempts, the deadline and the backoff; ``idempotent=True`` says
    ``fn`` may safely commit twice, so a commit with an unknown outcome is
    retried too.

    ``fn`` runs once per attempt, each time in a fresh transaction (a new
    connection or session from an engine or sessionmaker) that is committed
    when it returns. So ``fn`` may run more than once: keep effects outside the
    database out of it, and let database errors leave it (a ``try/except`` that
    swallows a 40001 defeats the retry). Between attempts the transaction is
    rolled back and the connection returned before the backoff sleep.

    Retries: SQLSTATE 40001 (CockroachDB's "restart transaction") and 40P01, a
    cached-plan 0A000 (after clearing the statement cache), a connection lost
    before COMMIT was sent (class 08, 57P01), and CockroachDB's transient
    58C00 (range unavailable), 58C01 (failed connection between its nodes)
    and 53300 (too many connections, at connect) before COMMIT was sent. A
    statement or lock timeout that fires (57014, 55P03) is raised, not retried.

    Bounded: ``RetryPolicy.deadline_s`` covers the whole call, from entry to
    return (admission, connect, every run of ``fn``, COMMIT, backoff,
    cleanup); ``fn`` running at the deadline is cancelled, its statement
    cancelled on the server and its transaction rolled back (module
    docstring).

    Raises: :class:`.RetriesExhaustedError` (from the last error) when the
    policy's attempts run out, :class:`.DeadlineExceededError` (a subclass)
    when its deadline does; :class:`.AmbiguousCommitError` when the
    connection is lost after COMMIT was sent, on 40003, or when the deadline
    passes with COMMIT in flight, unless ``idempotent=True``; ``TypeError``
    when ``fn`` is not an async function;
    every other error, and cancellation, unchanged and at once.

    Example::

        from sqlalchemy.ext.asyncio import AsyncSession

        from sqlalchemy_crdb_async import run_transaction

        async def transfer(session: AsyncSession) -> int:
            source = await session.get(Account, 1)
            target = await session.get(Account, 2)
            source.balance -= 10
            target.balance += 10
            return source.balance

        left = await run_transaction(Session, transfer)  # Session: async_sessionmaker

    Use it as ``await run_transaction(...)``. The target and ``fn`` are checked
    when it is called, before anything is awaited: a sync ``Engine``,
    ``Connection``, ``sessionmaker`` or ``Session`` raises :class:`TypeError` at
    once naming :func:`sqlalchemy_crdb_async.sync.run_transaction` (a coroutine
    nobody awaits would silently never run the work).
    """
    check_async_target(target, "run_transaction")
    if not callable(fn):
        raise TypeError(
            f"run_transaction(): fn must be an async function, got {type(fn).__name__}"
        )
    return _run_transaction(target, fn, policy, idempotent)


async def _run_transaction(
    target: Any,
    fn: Callable[[Any], Awaitable[_T]],
    policy: RetryPolicy | None,
    idempotent: bool,
) -> _T:
    loop = _Retrying(target, policy, idempotent, "run_transaction")
    async for attempt in loop:
        async with attempt as handle:
            pending = fn(handle)
            if not inspect.isawaitable(pending):
                raise TypeError(
                    "run_transaction(): fn must be an async function; it returned "
                    f"{type(pending).__name__}, not an awaitable"
                )
            result = await pending
    return result


_SYNC_TARGETS = (Engine, Connection, Session, sessionmaker)


def check_async_target(target: Any, api: str) -> None:
    """Raise at once when ``target`` cannot run an async retry loop.

    A sync target is what code written for the older ``sqlalchemy-cockroachdb``
    passes after renaming the import: :class:`TypeError` naming the sync API.
    Anything else that is not an async target: ``ArgumentError``.
    """
    if isinstance(target, _SYNC_TARGETS):
        raise TypeError(
            f"{api}() is the asyncio API and was given a sync "
            f"{type(target).__name__}; for sync code import "
            "sqlalchemy_crdb_async.sync.run_transaction instead "
            "(from sqlalchemy_crdb_async.sync import run_transaction), or pass an "
            "AsyncEngine, AsyncConnection, async_sessionmaker or AsyncSession."
        )
    sync_engine_of(target, api)
