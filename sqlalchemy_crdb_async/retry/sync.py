"""Sync transaction retries: ``run_transaction`` for Engine, Connection, Session.

A drop-in for the older ``sqlalchemy-cockroachdb`` package's
``run_transaction``, with the same classification, policy, stats and logging as
the asyncio helpers (:mod:`.retry`)::

    from sqlalchemy_crdb_async.sync import run_transaction

    def transfer(session: Session) -> None:
        ...

    run_transaction(sessionmaker(engine), transfer)
    run_transaction(engine, lambda conn: conn.execute(...), max_retries=5)

``target`` is an ``Engine`` or ``Connection`` (``fn`` gets a ``Connection``), a
``sessionmaker`` or ``Session`` (``fn`` gets a ``Session``). Each attempt runs
``fn`` in a fresh transaction and commits; a given Connection or Session must
have no transaction in progress. The backoff sleep is ``time.sleep``, after
the rollback.

The older package's keywords are accepted (see
docs/migrating-from-sqlalchemy-cockroachdb.md):

``max_retries``
    retries after the first attempt, so ``max_attempts = max_retries + 1``.
    ``None``, the older default ("retry until it commits"), means no limit on
    attempts, bounded instead by a deadline of
    :data:`UNLIMITED_RETRIES_DEADLINE_S` seconds (60), because a loop without
    any bound hides a livelock; for another bound pass
    ``policy=RetryPolicy(max_attempts=..., deadline_s=...)`` instead. Leaving
    it out gives this package's default policy (10 attempts), not the older
    unlimited one.
``max_backoff``
    the cap of one backoff, seconds; ``0`` means no sleep, as it did there.
``inject_error=True``
    ``RetryPolicy(inject_retry_errors=True)``: CockroachDB's
    ``inject_retry_errors_enabled`` on the first attempts (CockroachDB only).
``use_cockroach_restart``
    accepted, ``True`` or ``False``, and changes nothing: every retry here is a
    new transaction, never ``ROLLBACK TO SAVEPOINT cockroach_restart``, so
    nothing is held while sleeping (the older default ``True`` used the
    savepoint protocol; ``False`` used an ordinary savepoint).

Pass ``max_retries``/``max_backoff`` or ``policy=``, not both (``inject_error``
combines with either).

The deadline. A blocking call cannot be cancelled from its own thread, so the
deadline goes to the server: each attempt begins with ``SET LOCAL
statement_timeout = <milliseconds left>`` (PostgreSQL; CockroachDB v21.2+,
:func:`._deadline.statement_timeout_sql`). What that bounds: every statement of
the attempt, lock waits included, ends by the deadline, measured from the
start of that statement, so a statement started late in an attempt may end
past the deadline by the time the attempt spent before it; the 57014 it ends
with is raised as :class:`.DeadlineExceededError`, and the server rolls back,
holding no lock. What it cannot bound: time ``fn`` spends outside statements,
the connect and the pool checkout (bound them with the driver's
``connect_timeout`` and the pool's ``pool_timeout``), and a network that stops
answering (no server can tell the client anything; set TCP keepalives or
``tcp_user_timeout``). No retry starts past the deadline. The SET costs one
round trip per attempt (``RetryPolicy(deadline_s=None)`` skips it).

:class:`ChainTransaction` is the older package's way of running several
callbacks in one transaction: ``fn`` returns ``ChainTransaction([f2, f3])`` and
``f2(handle)``, ``f3(handle)`` then run in the same transaction, their results
appended to ``.results``; the ``ChainTransaction`` is what
``run_transaction`` returns. A retryable error anywhere retries the whole
attempt (``fn`` and the chain) in a new transaction, where the older package
retried each callback at its own savepoint.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TypeVar, overload

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from .. import sqlstate as codes
from ._deadline import statement_timeout_sql
from ._loop import AttemptLoop, inject_statement, mark_injected, switch_off_statement
from .classify import ErrorKind, sqlstate_of
from .policy import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["UNLIMITED_RETRIES_DEADLINE_S", "ChainTransaction", "run_transaction"]

_T = TypeVar("_T")
log = logging.getLogger("sqlalchemy_crdb_async.retry")


class _Unset:
    """The default of ``max_retries`` / ``max_backoff``: "not given"."""

    def __repr__(self) -> str:  # what help(run_transaction) shows
        return "<not given>"


_UNSET: Any = _Unset()

#: The deadline, in seconds, that bounds ``max_retries=None`` (no attempt limit).
UNLIMITED_RETRIES_DEADLINE_S = 60.0
#: A 57014 this close to the deadline (or past it) is our statement_timeout.
_TIMEOUT_SLACK_S = 0.05


class ChainTransaction:
    """Callbacks to run after ``fn`` in the same transaction (older package API).

    Return one from ``fn``; ``run_transaction`` calls each of ``transactions``
    with the same Connection or Session, appends each result to ``results`` and
    returns this object. See the module docstring.
    """

    def __init__(self, transactions: list[Callable[[Any], Any]] | None = None) -> None:
        #: The results of ``transactions``, in order, once the transaction ran.
        self.results: list[Any] = []
        #: The callbacks to run after ``fn``, each given the Connection/Session.
        self.transactions: list[Callable[[Any], Any]] = list(transactions or [])

    def add_result(self, result: Any) -> None:
        """Append one callback's result to :attr:`results`."""
        self.results.append(result)


def _engine_of(target: Any) -> Engine:
    bind: Any = target
    if isinstance(target, sessionmaker):
        bind = target.kw.get("bind")
    elif isinstance(target, Session):
        bind = target.bind
    if isinstance(bind, Engine):
        return bind
    if isinstance(bind, Connection):
        return bind.engine
    if isinstance(target, (sessionmaker, Session)):
        raise sa_exc.ArgumentError(
            f"run_transaction(): the {type(target).__name__} has no bind; create it "
            "with an engine, e.g. sessionmaker(engine)."
        )
    raise sa_exc.ArgumentError(
        "run_transaction(): target must be an Engine, Connection, sessionmaker or "
        f"Session, got {type(target).__name__}. For AsyncEngine and friends use "
        "sqlalchemy_crdb_async.run_transaction (async)."
    )


def _policy_from(
    policy: RetryPolicy | None, max_retries: Any, max_backoff: Any, inject_error: Any
) -> RetryPolicy | None:
    if not isinstance(inject_error, bool):
        raise sa_exc.ArgumentError(
            "run_transaction(): inject_error must be True or False, got "
            f"{inject_error!r}"
        )
    if max_retries is _UNSET and max_backoff is _UNSET:
        if inject_error:
            base = policy or DEFAULT_POLICY
            return dataclasses.replace(base, inject_retry_errors=True)
        return policy
    if policy is not None:
        raise sa_exc.ArgumentError(
            "run_transaction(): pass either policy= or the older max_retries/"
            "max_backoff keywords, not both"
        )
    base = DEFAULT_POLICY
    changes: dict[str, Any] = {"inject_retry_errors": inject_error}
    if max_retries is None:
        # the older "retry until it commits": no attempt limit, but a deadline
        changes["max_attempts"] = sys.maxsize
        changes["deadline_s"] = UNLIMITED_RETRIES_DEADLINE_S
    elif max_retries is not _UNSET:
        if (
            isinstance(max_retries, bool)
            or not isinstance(max_retries, int)
            or max_retries < 0
        ):
            raise sa_exc.ArgumentError(
                f"run_transaction(): max_retries must be an integer >= 0 or None "
                f"(no limit on attempts, bounded by a deadline), got {max_retries!r}"
            )
        changes["max_attempts"] = max_retries + 1
    if max_backoff is not _UNSET:
        if (
            isinstance(max_backoff, bool)
            or not isinstance(max_backoff, (int, float))
            or max_backoff < 0
        ):
            raise sa_exc.ArgumentError(
                "run_transaction(): max_backoff must be a number of seconds >= 0, "
                f"got {max_backoff!r}"
            )
        changes["max_backoff_s"] = float(max_backoff)
        changes["initial_backoff_s"] = min(base.initial_backoff_s, float(max_backoff))
    return dataclasses.replace(base, **changes)


def _check_restart(use_cockroach_restart: Any) -> None:
    if not isinstance(use_cockroach_restart, bool):
        raise sa_exc.ArgumentError(
            "run_transaction(): use_cockroach_restart must be True or False, got "
            f"{use_cockroach_restart!r} (either way each retry is a new transaction)"
        )


def _run_chain(result: Any, handle: Connection | Session) -> None:
    if isinstance(result, ChainTransaction):
        result.results.clear()
        for callback in result.transactions:
            result.add_result(callback(handle))


class _SyncScope:
    def __init__(self, target: Any, loop: AttemptLoop) -> None:
        self.target = target
        self.loop = loop
        self.commit_sent = False
        self.handle: Connection | Session | None = None
        self.owned = isinstance(target, (Engine, sessionmaker))

    def open(self) -> Connection | Session:
        target = self.target
        if isinstance(target, Engine):
            self.handle = handle = target.connect()
            handle.begin()
        elif isinstance(target, sessionmaker):
            self.handle = handle = target()
        else:
            if target.in_transaction():
                raise sa_exc.InvalidRequestError(
                    f"run_transaction(): the {type(target).__name__} already has a "
                    "transaction in progress; commit or roll it back first (each "
                    "attempt begins its own)."
                )
            self.handle = handle = target
            if isinstance(handle, Connection):
                handle.begin()
        statement = inject_statement(self.loop)
        if statement is not None:
            # the pool switches it off on return, however the attempt ends
            mark_injected(self._connection(), self.loop.inject_now)
            self._execute(statement)
        timeout = statement_timeout_sql(
            self.loop.policy, self.loop.started, self._connection().dialect
        )
        if timeout is not None:  # the deadline, on the server (module docstring)
            self._execute(timeout)
        return handle

    def _connection(self) -> Connection:
        handle = self.handle
        conn = handle.connection() if isinstance(handle, Session) else handle
        assert conn is not None
        return conn

    def _execute(self, sql: str) -> None:
        self._connection().exec_driver_sql(sql)

    def commit(self) -> None:
        handle = self.handle
        assert handle is not None
        if isinstance(handle, Session):
            handle.flush()
        self.commit_sent = True
        handle.commit()
        if self.loop.inject_now:
            conn = self._connection()
            conn.exec_driver_sql(switch_off_statement())
            # off from here on: CockroachDB does not make a SET transactional
            mark_injected(conn, False)
            handle.commit()
        if self.owned:
            handle.close()

    def abort(self) -> None:
        handle = self.handle
        if handle is None:
            return
        try:
            if self.owned:
                handle.close()
            else:
                handle.rollback()
        except Exception:
            log.debug("cleanup after a failed attempt raised", exc_info=True)


def _raise_if_deadline(loop: AttemptLoop, error: Exception) -> None:
    """Our own ``statement_timeout`` fired at the deadline: say so."""
    left = loop.remaining_s()
    if (
        left is not None
        and left <= _TIMEOUT_SLACK_S
        and sqlstate_of(error) == codes.QUERY_CANCELED
    ):
        raise loop.deadline_error(
            "in a statement, ended by the statement_timeout set for the deadline",
            error,
        ) from error


@overload
def run_transaction(
    target: Engine | Connection,
    fn: Callable[[Connection], _T],
    max_retries: int | None = ...,
    max_backoff: float = ...,
    *,
    policy: RetryPolicy | None = ...,
    idempotent: bool = ...,
    inject_error: bool = ...,
    use_cockroach_restart: bool = ...,
) -> _T: ...
@overload
def run_transaction(
    target: sessionmaker[Any] | Session,
    fn: Callable[[Session], _T],
    max_retries: int | None = ...,
    max_backoff: float = ...,
    *,
    policy: RetryPolicy | None = ...,
    idempotent: bool = ...,
    inject_error: bool = ...,
    use_cockroach_restart: bool = ...,
) -> _T: ...
def run_transaction(
    target: Any,
    fn: Callable[[Any], _T],
    max_retries: Any = _UNSET,
    max_backoff: Any = _UNSET,
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    inject_error: bool = False,
    use_cockroach_restart: bool = True,
) -> _T:
    """Call ``fn(conn_or_session)`` in a transaction, retrying; return its result.

    Accepts: ``target``, a sync ``Engine`` or ``Connection`` (``fn`` gets a
    ``Connection``) or a ``sessionmaker`` or ``Session`` (``fn`` gets a
    ``Session``); a given connection or session must have no transaction in
    progress. ``fn`` is a plain function of that one argument. Either
    ``policy`` (:class:`.RetryPolicy`, default ``RetryPolicy()``) or the older
    package's ``max_retries`` (retries after the first attempt, an integer
    >= 0) and ``max_backoff`` (the cap of one backoff, seconds; 0 = no sleep);
    a keyword not given keeps the default. ``idempotent=True`` says ``fn`` may
    safely commit twice.

    ``fn`` runs once per attempt, each time in a fresh transaction that is
    committed when it returns; between attempts the transaction is rolled back
    and the thread sleeps (``time.sleep``).

    Retries: SQLSTATE 40001 and 40P01, a cached-plan 0A000, a connection lost
    before COMMIT was sent (class 08, 57P01); the same rules as the async
    :func:`sqlalchemy_crdb_async.run_transaction`.

    Bounded: each statement by the deadline, on the server (module
    docstring: what is and is not bounded).

    Raises: :class:`.RetriesExhaustedError` when the attempts run out,
    :class:`.DeadlineExceededError` at the deadline;
    :class:`.AmbiguousCommitError` when the connection is lost after COMMIT
    was sent, or on 40003, unless ``idempotent=True``;
    ``sqlalchemy.exc.ArgumentError`` for a wrong target, ``max_retries`` or
    ``max_backoff``, or both ``policy`` and the older keywords; ``TypeError``
    when ``fn`` is not callable or returns an awaitable; every other error
    unchanged.

    Example::

        from sqlalchemy import text
        from sqlalchemy.orm import Session, sessionmaker

        from sqlalchemy_crdb_async.sync import run_transaction

        def transfer(session: Session) -> None:
            move = text("UPDATE accounts SET balance = balance + :d WHERE id = :id")
            session.execute(move, {"d": -1, "id": 1})
            session.execute(move, {"d": 1, "id": 2})

        run_transaction(sessionmaker(sync_engine), transfer, max_retries=5)
    """
    if not callable(fn):
        raise TypeError(
            f"run_transaction(): fn must be callable, got {type(fn).__name__}"
        )
    _check_restart(use_cockroach_restart)
    loop = AttemptLoop(
        _policy_from(policy, max_retries, max_backoff, inject_error),
        _engine_of(target),
        idempotent=idempotent,
        api="run_transaction",
    )
    while True:
        loop.start()
        scope = _SyncScope(target, loop)
        try:
            handle = scope.open()
            result = fn(handle)
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                raise TypeError(
                    "run_transaction(): fn returned an awaitable; for async code use "
                    "sqlalchemy_crdb_async.run_transaction (async)"
                )
            _run_chain(result, handle)
            scope.commit()
        except Exception as error:
            scope.abort()
            _raise_if_deadline(loop, error)
            decision = loop.next_sleep(error, commit_sent=scope.commit_sent)
            if decision is None:
                raise
            sleep_s, verdict = decision
            if verdict.kind is ErrorKind.RETRY_AFTER_CACHE_CLEAR:
                loop.clear_statement_cache()
            time.sleep(sleep_s)
            continue
        except BaseException:
            scope.abort()
            raise
        loop.committed()
        return result
