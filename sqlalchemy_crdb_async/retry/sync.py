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

The older package's keywords are accepted: ``max_retries`` (retries after the
first attempt, so ``max_attempts = max_retries + 1``; it also took ``None`` for
"unlimited", which is refused here with a message, since an unbounded retry
loop hides a livelock) and ``max_backoff`` (the cap of one backoff, seconds;
``0`` means no sleep, as it did there). Pass either those or ``policy=``.

Unlike the older package, the retry is a new transaction rather than
``ROLLBACK TO SAVEPOINT cockroach_restart``: nothing is held while sleeping.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from typing import TYPE_CHECKING, Any, TypeVar, overload

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from ._loop import AttemptLoop, inject_statement, mark_injected, switch_off_statement
from .classify import ErrorKind
from .policy import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["run_transaction"]

_T = TypeVar("_T")
log = logging.getLogger("sqlalchemy_crdb_async.retry")
_UNSET: Any = object()


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
    policy: RetryPolicy | None, max_retries: Any, max_backoff: Any
) -> RetryPolicy | None:
    if max_retries is _UNSET and max_backoff is _UNSET:
        return policy
    if policy is not None:
        raise sa_exc.ArgumentError(
            "run_transaction(): pass either policy= or the older max_retries/"
            "max_backoff keywords, not both"
        )
    base = DEFAULT_POLICY
    changes: dict[str, Any] = {}
    if max_retries is not _UNSET:
        if (
            max_retries is None
            or isinstance(max_retries, bool)
            or not isinstance(max_retries, int)
            or max_retries < 0
        ):
            raise sa_exc.ArgumentError(
                f"run_transaction(): max_retries must be an integer >= 0, got "
                f"{max_retries!r} (the older package's None, 'retry forever', is "
                "not offered: pass a large number instead)"
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


@overload
def run_transaction(
    target: Engine | Connection,
    fn: Callable[[Connection], _T],
    max_retries: int = ...,
    max_backoff: float = ...,
    *,
    policy: RetryPolicy | None = ...,
    idempotent: bool = ...,
) -> _T: ...
@overload
def run_transaction(
    target: sessionmaker[Any] | Session,
    fn: Callable[[Session], _T],
    max_retries: int = ...,
    max_backoff: float = ...,
    *,
    policy: RetryPolicy | None = ...,
    idempotent: bool = ...,
) -> _T: ...
def run_transaction(
    target: Any,
    fn: Callable[[Any], _T],
    max_retries: Any = _UNSET,
    max_backoff: Any = _UNSET,
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
) -> _T:
    """Call ``fn(conn_or_session)`` in a transaction, retrying; return its result.

    See the module docstring; the rules are those of the async
    :func:`sqlalchemy_crdb_async.run_transaction`.
    """
    if not callable(fn):
        raise TypeError(
            f"run_transaction(): fn must be callable, got {type(fn).__name__}"
        )
    loop = AttemptLoop(
        _policy_from(policy, max_retries, max_backoff),
        _engine_of(target),
        idempotent=idempotent,
        api="run_transaction",
    )
    while True:
        loop.start()
        scope = _SyncScope(target, loop)
        try:
            result = fn(scope.open())
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                raise TypeError(
                    "run_transaction(): fn returned an awaitable; for async code use "
                    "sqlalchemy_crdb_async.run_transaction (async)"
                )
            scope.commit()
        except Exception as error:
            scope.abort()
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
