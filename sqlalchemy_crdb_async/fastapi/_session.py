"""The request's transaction and its dependencies (internal).

A :class:`RequestTransaction` lives in the ASGI scope of one request under a
:class:`.RetryingRoute`. It owns the sessions and connections the current
attempt opened (one per dependency, each a retry ``_Scope``: the same open /
commit / abort as :func:`.run_transaction`), the request's
:class:`.AttemptLoop` (made when the first handle names the engine), and the
attempt's admission slot (taken by the first writing handle; read-only ones
take none).

:func:`session_dependency` and :func:`connection_dependency` are the FastAPI
dependencies that ask it for an ``AsyncSession`` or an ``AsyncConnection``;
:func:`route_connection` asks for the connection from the endpoint's body.
They have no ``yield``: the route, not FastAPI's exit stack, closes the
handle, so the close happens before the response is sent, and before the
request task ends when the client went away.

No ``from __future__ import annotations`` here: FastAPI reads the dependency's
``request: Request`` annotation at run time.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from starlette.requests import Request

from ..errors import AmbiguousCommitError, DeadlineExceededError
from ..retry._deadline import DeadlineTimer, cleanup_bound_s
from ..retry._loop import AttemptLoop
from ..retry._scopes import Handle, _Scope, scope_class, sync_engine_of
from ..retry.classify import ErrorKind
from ..retry.policy import DEFAULT_POLICY, RetryPolicy
from ..retry.stats import counters_for

__all__ = [
    "STATE_KEY",
    "RequestTransaction",
    "connection_dependency",
    "route_connection",
    "session_dependency",
]

log = logging.getLogger("sqlalchemy_crdb_async.fastapi")

#: Where the request's transaction lives in the ASGI scope.
STATE_KEY = "sqlalchemy_crdb_async.transaction"
API = "RetryingRoute"


#: The outcome an attempt reports to admission when it is rolled back without
#: an error (an answer >= 400): neither a commit nor a conflict.
_NOT_COMMITTED = Exception("rolled back without committing")


class RequestTransaction:
    """The transactions of one request; see the module docstring."""

    def __init__(self, policy: RetryPolicy | None, idempotent: bool) -> None:
        self.policy = policy
        self.idempotent = idempotent
        #: ``time.monotonic()`` at the request's start: the deadline counts
        #: from here.
        self.started = time.monotonic()
        #: COMMIT had been sent when the last attempt ended.
        self.ended_in_commit = False
        #: The error the last retry was for (the deadline error keeps it).
        self.last_retried: Exception | None = None
        #: Made by the first session: it needs the engine.
        self.loop: AttemptLoop | None = None
        #: Attempts started, 1 for the first.
        self.number = 0
        self._scopes: dict[object, _Scope] = {}
        self._read_only: set[object] = set()
        #: A session of this attempt committed and a later one did not: the
        #: endpoint must not run again (its first session's work is in).
        self.partly_committed = False

    # -- one attempt ---------------------------------------------------------

    def begin_attempt(self) -> None:
        self.number += 1
        if self.loop is not None:
            self.loop.start()
        self._scopes = {}
        self._read_only = set()
        self.partly_committed = False

    async def handle(
        self,
        target: async_sessionmaker[Any] | AsyncEngine,
        key: object,
        read_only: bool,
    ) -> Handle:
        """The attempt's session of a sessionmaker, or its connection of an
        engine (opened on first use)."""
        scope = self._scopes.get(key)
        if scope is None:
            loop = self._loop_of(sync_engine_of(target, API))
            if not read_only:
                # Admission: the engine's contention-adaptive gate
                # (retry/_admission), taken when the attempt opens its first
                # writing session, FIFO, counted in the policy's deadline; a
                # no-op once held or with admission off. Read-only handles
                # skip it: each statement is its own implicit transaction,
                # holding no lock past it, and a read should not queue behind
                # a gate sized for conflicting writers.
                await loop.admit()
            scope = scope_class(target)(target, loop)
            self._scopes[key] = scope
            if read_only:
                self._read_only.add(key)
            await scope.open()
        return scope.handle

    def _loop_of(self, engine: Engine | None) -> AttemptLoop:
        """The request's attempt loop, made on first need. ``engine`` None:
        an error came before any session was opened (a ReplayMismatchError
        from a ``retrying_session`` of the endpoint's own); such a loop has no
        admission gate and no counters in ``retry_stats``, and gets the
        engine of the first session opened later."""
        loop = self.loop
        if loop is None:
            # A failed connect is not retried inside the request: the client
            # gets 503 with Retry-After at once (_answers.py).
            loop = AttemptLoop(
                self.policy,
                engine,
                idempotent=self.idempotent,
                api=API,
                retry_failed_connects=False,
            )
            loop.restart_clock(self.started)
            for _ in range(self.number):
                loop.start()
            self.loop = loop
        elif loop.engine is None and engine is not None:
            loop.engine = engine
            loop.counters = counters_for(engine)
        return loop

    @property
    def commit_sent(self) -> bool:
        return any(scope.commit_sent for scope in self._scopes.values())

    async def commit(self) -> None:
        """COMMIT every writing session, in the order opened; close the readers."""
        wrote = False
        for key, scope in list(self._scopes.items()):
            if key in self._read_only:
                continue
            self.partly_committed = wrote
            await scope.commit()  # flush, COMMIT, close
            del self._scopes[key]
            wrote = True
        self.partly_committed = False
        if wrote and self.loop is not None:
            self.loop.committed()
        await self.abort(outcome=None)

    async def abort(
        self,
        timeout_s: float = 10.0,
        outcome: BaseException | None = _NOT_COMMITTED,
    ) -> None:
        """Roll back and close every session still open, shielded and bounded;
        then hand the admission slot back with the attempt's ``outcome`` (None:
        committed; a 40001/40P01 lowers the engine's limit)."""
        scopes, self._scopes = list(self._scopes.values()), {}
        try:
            if not scopes:
                return
            with anyio.move_on_after(timeout_s, shield=True) as bounded:
                for scope in scopes:
                    await scope.abort()
            if bounded.cancelled_caught:
                log.warning(
                    "rolling back a request's session took over %.1f s; its "
                    "connection is invalidated",
                    timeout_s,
                )
                with anyio.move_on_after(1.0, shield=True):
                    for scope in scopes:
                        await scope.handle.invalidate()
        finally:
            if self.loop is not None:
                self.loop.release(outcome)

    # -- the deadline ----------------------------------------------------------

    def timer(self) -> DeadlineTimer:
        """The timer that cancels the request's task at the deadline."""
        return DeadlineTimer(self.policy or DEFAULT_POLICY, self.started)

    def cleanup_bound_s(self) -> float:
        """How long a rollback may take now and still keep the deadline."""
        return cleanup_bound_s(self.policy or DEFAULT_POLICY, self.started)

    def note_ending(self) -> None:
        """Remember, before the sessions go, whether COMMIT was in flight."""
        self.ended_in_commit = self.commit_sent

    def deadline_error(self) -> Exception:
        """The error of a request its deadline ended (for :func:`.answer_for`)."""
        policy = self.policy or DEFAULT_POLICY
        if self.ended_in_commit and not self.idempotent:
            return AmbiguousCommitError(
                f"{API}: RetryPolicy.deadline_s={policy.deadline_s} passed while "
                "COMMIT was in flight; the outcome is unknown."
            )
        if self.loop is not None:
            return self.loop.deadline_error(
                "while the endpoint ran or backed off", self.last_retried
            )
        error = DeadlineExceededError(
            f"{API}: RetryPolicy.deadline_s={policy.deadline_s} passed before the "
            "endpoint opened a session."
        )
        error.during_attempt = True
        return error

    # -- between attempts ----------------------------------------------------

    def next_sleep(self, error: Exception) -> float | None:
        """The backoff before the next attempt, or None: give up on ``error``.

        Raises AmbiguousCommitError or RetriesExhaustedError when that is the
        loop's verdict.
        """
        if self.partly_committed:
            # One session committed already: running the endpoint again
            # would repeat it.
            return None
        loop = self._loop_of(None)
        decision = loop.next_sleep(error, commit_sent=self.commit_sent)
        if decision is None:
            return None
        sleep_s, verdict = decision
        if verdict.kind is ErrorKind.RETRY_AFTER_CACHE_CLEAR:
            loop.clear_statement_cache()
        self.last_retried = error
        return sleep_s


def _refuse_flush(
    session: Session, flush_context: UOWTransaction, instances: Any
) -> None:
    if session.new or session.dirty or session.deleted:
        raise sa_exc.InvalidRequestError(
            "this session is read-only (session_dependency(..., read_only=True)): "
            "it cannot flush changes; use session_dependency(sessionmaker) for "
            "endpoints that write."
        )


def _refuse_dml(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise sa_exc.InvalidRequestError(
            "this session is read-only (session_dependency(..., read_only=True)): "
            "it cannot run INSERT, UPDATE or DELETE; use "
            "session_dependency(sessionmaker) for endpoints that write."
        )


def _read_only_maker(maker: async_sessionmaker[Any]) -> async_sessionmaker[Any]:
    """``maker`` on an AUTOCOMMIT view of its engine, refusing ORM writes."""
    bind = maker.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise sa_exc.ArgumentError(
            "session_dependency(read_only=True): the sessionmaker must be bound to "
            f"an AsyncEngine, got {type(bind).__name__}"
        )
    base: type[Session] = maker.kw.get("sync_session_class", Session)
    read_only_class = type(f"ReadOnly{base.__name__}", (base,), {})
    event.listen(read_only_class, "before_flush", _refuse_flush)
    event.listen(read_only_class, "do_orm_execute", _refuse_dml)
    kw = {
        **maker.kw,
        "bind": bind.execution_options(isolation_level="AUTOCOMMIT"),
        "sync_session_class": read_only_class,
    }
    return async_sessionmaker(class_=maker.class_, **kw)


def session_dependency(
    sessionmaker: async_sessionmaker[Any], *, read_only: bool = False
) -> Callable[[Request], Awaitable[AsyncSession]]:
    """A FastAPI dependency giving the endpoint the request's ``AsyncSession``.

    Use it on routes of a :class:`.RetryingRoute`::

        get_session = session_dependency(Session)
        async def endpoint(session: AsyncSession = Depends(get_session)): ...

    The session belongs to the route's transaction: the route commits it after
    the endpoint (and its response) and rolls it back on error; the endpoint
    never commits. ``read_only=True`` gives a session in an implicit
    transaction (no BEGIN/ROLLBACK round trips) that refuses ORM writes; see
    the module docstring of :mod:`sqlalchemy_crdb_async.fastapi` for what it
    gives up.
    """
    if not isinstance(sessionmaker, async_sessionmaker):
        raise TypeError(
            "session_dependency(): expected an async_sessionmaker, got "
            f"{type(sessionmaker).__name__}"
        )
    sync_engine_of(sessionmaker, "session_dependency")  # bound to an engine?
    maker = _read_only_maker(sessionmaker) if read_only else sessionmaker
    return _dependency(maker, read_only, "session_dependency", AsyncSession)


_H = TypeVar("_H", AsyncSession, AsyncConnection)


def _dependency(
    target: async_sessionmaker[Any] | AsyncEngine,
    read_only: bool,
    api: str,
    kind: type[_H],
) -> Callable[[Request], Awaitable[_H]]:
    """The dependency giving the request's handle of ``target`` (one per
    request and dependency: ``key``)."""
    key = object()

    async def request_handle(request: Request) -> _H:
        handle = await _transaction_of(request, api).handle(target, key, read_only)
        assert isinstance(handle, kind)
        return handle

    return request_handle


def _transaction_of(request: Request, api: str) -> RequestTransaction:
    transaction = request.scope.get(STATE_KEY)
    if not isinstance(transaction, RequestTransaction):
        raise RuntimeError(
            f"{request.method} {request.url.path}: {api}() needs the route to "
            "own the transaction; create the router with "
            "APIRouter(route_class=RetryingRoute)."
        )
    return transaction


def connection_dependency(
    engine: AsyncEngine, *, read_only: bool = False
) -> Callable[[Request], Awaitable[AsyncConnection]]:
    """A FastAPI dependency giving the endpoint the request's ``AsyncConnection``.

    :func:`session_dependency` without the ORM session: for endpoints that
    run Core statements or the prepared fast path (:func:`.prepared`), which
    need no identity map and no unit of work, so the request skips the
    ``Session``'s own begin, flush, commit and close::

        get_conn = connection_dependency(engine)
        async def endpoint(conn: AsyncConnection = Depends(get_conn)):
            row = await LOCK.one(conn, id=...)       # in the route's transaction

    The connection is in the route's transaction: the route commits it after
    the endpoint and its response, rolls it back on error, re-runs the
    endpoint on 40001/40P01, and closes it; the endpoint never commits.
    ``read_only=True`` gives a connection in an implicit transaction
    (``AUTOCOMMIT``: no BEGIN/ROLLBACK round trips, each statement its own
    transaction; do not write through it). Every use of one dependency in a
    request gets the same connection.
    """
    if not isinstance(engine, AsyncEngine):
        raise TypeError(
            "connection_dependency(): expected an AsyncEngine, got "
            f"{type(engine).__name__}"
        )
    target = (
        engine.execution_options(isolation_level="AUTOCOMMIT") if read_only else engine
    )
    return _dependency(target, read_only, "connection_dependency", AsyncConnection)


#: Where an engine keeps its AUTOCOMMIT view, for route_connection(read_only=True).
_AUTOCOMMIT_VIEW = "_crdb_autocommit_view"


def _autocommit_view(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` in AUTOCOMMIT, made once (``execution_options()`` costs about
    as much as a prepared read) and kept on the engine itself: the view refers
    back to the engine, so a cache beside it would keep it alive for good."""
    attrs = vars(engine.sync_engine)
    view: AsyncEngine | None = attrs.get(_AUTOCOMMIT_VIEW)
    if view is None:
        view = attrs[_AUTOCOMMIT_VIEW] = engine.execution_options(
            isolation_level="AUTOCOMMIT"
        )
    return view


async def route_connection(
    request: Request, engine: AsyncEngine, *, read_only: bool = False
) -> AsyncConnection:
    """The request's ``AsyncConnection`` of ``engine``, asked for in the
    endpoint's body instead of through ``Depends``.

    The same connection, in the same route transaction, as
    :func:`connection_dependency` gives (committed by the route, rolled back
    on error, the endpoint re-run on 40001), without FastAPI's dependency
    machinery, which costs about as much client CPU per request as a prepared
    statement's round trip (``benchmarks/README.md``). For the hottest
    endpoints::

        @router.post("/fast/transfers")
        async def transfer(t: TransferIn, request: Request):
            conn = await route_connection(request, engine)
            row = await LOCK.one(conn, id=t.from_id)

    Every call in one request with the same engine and ``read_only`` returns
    the same connection; ``read_only=True`` is the implicit-transaction
    connection of ``connection_dependency(engine, read_only=True)``.
    """
    if not isinstance(engine, AsyncEngine):
        raise TypeError(
            f"route_connection(): expected an AsyncEngine, got {type(engine).__name__}"
        )
    transaction = _transaction_of(request, "route_connection")
    target = _autocommit_view(engine) if read_only else engine
    handle = await transaction.handle(
        target, (engine.sync_engine, read_only), read_only
    )
    assert isinstance(handle, AsyncConnection)
    return handle
