"""One attempt's transaction on each kind of target (internal).

``run_transaction`` and ``retrying`` accept an ``AsyncEngine``, an
``AsyncConnection``, an ``async_sessionmaker`` or an ``AsyncSession``; a
``_Scope`` subclass per kind opens the attempt's transaction, commits it, and
rolls it back. :func:`sync_engine_of` finds the sync ``Engine`` behind any of
them (for the dialect and the statistics).

An engine's scope is the hot one (``run_transaction(engine, ...)``, the
FastAPI route's ``connection_dependency``), so it enters SQLAlchemy's greenlet
as few times as it can: once to check out and begin, and once to commit and
return the connection to the pool when that return cannot wait for anything a
cancellation could cut short (:func:`_quiet_return`); otherwise the return is
the shielded, bounded cleanup of :mod:`sqlalchemy_crdb_async._cleanup`.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.util import greenlet_spawn

from .._cleanup import run_cleanup, terminator
from ._loop import AttemptLoop, inject_statement, mark_injected, switch_off_statement

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["Handle", "scope_class", "sessionmaker_of", "sync_engine_of"]

log = logging.getLogger("sqlalchemy_crdb_async.retry")

Handle = AsyncConnection | AsyncSession


def sync_engine_of(target: Any, api: str) -> Engine:
    """The sync Engine behind any target, for stats and the dialect."""
    bind: Any = target
    if isinstance(target, async_sessionmaker):
        bind = target.kw.get("bind")
    elif isinstance(target, AsyncSession):
        bind = target.bind
    if isinstance(bind, (AsyncEngine, AsyncConnection)):
        return bind.sync_engine
    if isinstance(target, (async_sessionmaker, AsyncSession)):
        raise sa_exc.ArgumentError(
            f"{api}(): the {type(target).__name__} has no bind; create it with an "
            "engine, e.g. async_sessionmaker(engine)."
        )
    raise sa_exc.ArgumentError(
        f"{api}(): target must be an AsyncEngine, AsyncConnection, "
        f"async_sessionmaker or AsyncSession, got {type(target).__name__}. "
        "For a sync Engine/Session use sqlalchemy_crdb_async.sync.run_transaction."
    )


def sessionmaker_of(target: Any, api: str) -> async_sessionmaker[Any]:
    """``target`` (an async_sessionmaker or AsyncEngine) as a sessionmaker."""
    if isinstance(target, AsyncEngine):
        return async_sessionmaker(target)
    if isinstance(target, async_sessionmaker):
        return target
    raise sa_exc.ArgumentError(
        f"{api}(): target must be an async_sessionmaker or AsyncEngine, got "
        f"{type(target).__name__}"
    )


class _Scope:
    """One attempt's transaction on one kind of target."""

    commit_sent = False
    #: COMMIT returned: the attempt's work is in, whatever happens after.
    committed = False
    handle: Handle

    def __init__(self, target: Any, loop: AttemptLoop) -> None:
        self.target = target
        self.loop = loop
        self.injected = False

    async def open(self) -> Handle:
        raise NotImplementedError

    async def _connection(self) -> AsyncConnection:
        if isinstance(self.handle, AsyncSession):
            return await self.handle.connection()
        return self.handle

    async def _inject(self) -> None:
        statement = inject_statement(self.loop)
        if statement is not None:
            conn = await self._connection()
            self.injected = self.loop.inject_now
            # noted first: a cancelled SET may still have reached the server
            mark_injected(conn.sync_connection, self.injected)  # type: ignore[arg-type]
            await conn.exec_driver_sql(statement)

    async def _uninject(self) -> None:
        # After a commit; any other ending is covered by the pool listener
        # (_loop.mark_injected) when the connection goes back to the pool.
        if self.injected:
            conn = await self._connection()
            await conn.exec_driver_sql(switch_off_statement())
            # off from here on: CockroachDB does not make a SET transactional
            mark_injected(conn.sync_connection, False)  # type: ignore[arg-type]
            await self.handle.commit()

    async def commit(self) -> None:
        if isinstance(self.handle, AsyncSession):
            await self.handle.flush()
        self.commit_sent = True
        await self.handle.commit()
        self.committed = True
        await self._uninject()

    async def abort(self) -> None:
        raise NotImplementedError


class _OwnedScope(_Scope):
    """A scope that opens its own connection or session, and closes it after."""

    async def commit(self) -> None:
        await super().commit()
        await self._close()

    async def abort(self) -> None:
        if hasattr(self, "handle"):
            await self._close()

    async def _close(self) -> None:
        handle = self.handle
        what = f"{self.loop.api}(): close"
        await run_cleanup(
            handle.close(),
            terminator(handle),
            what,
            timeout_s=self.loop.cleanup_bound_s(),
        )


class _EngineScope(_OwnedScope):
    async def open(self) -> Handle:
        engine: AsyncEngine = self.target
        # engine.connect() then conn.begin(), in one trip into SQLAlchemy's
        # greenlet instead of two (the BEGIN itself goes out with the first
        # statement, as asyncpg's adapter does it).
        sync = await greenlet_spawn(_connect_begun, engine.sync_engine)
        connection_class = getattr(engine, "_connection_cls", AsyncConnection)
        self.handle = conn = connection_class(engine, sync)
        await self._inject()
        return conn

    async def commit(self) -> None:
        handle = self.handle
        sync = handle.sync_connection if isinstance(handle, AsyncConnection) else None
        if sync is None or self.injected or not _quiet_return(sync):
            await super().commit()
            return
        self.commit_sent = True
        await greenlet_spawn(self._commit_and_return, sync, handle)

    def _commit_and_return(self, sync: Connection, handle: AsyncConnection) -> None:
        """COMMIT, then the return to the pool, in one trip into the greenlet
        (see :func:`_quiet_return`)."""
        sync.commit()
        self.committed = True
        try:
            sync.close()
        except Exception:
            # As run_cleanup treats a failed close: logged, closed by force.
            log.warning(
                "%s(): returning a committed connection failed; closing it by force",
                self.loop.api,
                exc_info=True,
            )
            terminator(handle)()  # no I/O: asyncpg's terminate()
            # The record goes back to the pool, invalidated: nothing stays
            # checked out (the driver connection is closed already).
            with suppress(Exception):
                sync.invalidate()


def _quiet_return(sync: Connection) -> bool:
    """Whether returning ``sync`` after its COMMIT can wait for nothing that
    a cancellation could cut short, so it needs no shielded cleanup task.

    asyncpg: SQLAlchemy's adapter sends no ROLLBACK for a connection with no
    transaction, and ``CockroachPool`` runs any reset it owes in its own
    bounded, shielded cleanup (``pool/_pool.py``). A pool ``checkin`` or
    ``reset`` listener (the application's, or retry-error injection's) could
    do I/O of its own: then the close goes through :func:`.run_cleanup` as
    before.
    """
    if sync.dialect.driver != "asyncpg":
        return False
    dispatch = sync.engine.pool.dispatch
    return not dispatch.checkin and not dispatch.reset


def _connect_begun(engine: Engine) -> Connection:
    connection = engine.connect()
    try:
        connection.begin()
    except BaseException:
        connection.close()
        raise
    return connection


class _ConnectionScope(_Scope):
    async def open(self) -> Handle:
        conn: AsyncConnection = self.target
        if conn.in_transaction():
            raise sa_exc.InvalidRequestError(
                f"{self.loop.api}(): the AsyncConnection already has a transaction "
                "in progress; commit or roll it back first (each attempt begins "
                "its own)."
            )
        self.handle = conn
        await conn.begin()
        await self._inject()
        return conn

    async def abort(self) -> None:
        await _rollback(self.target, self.loop)


class _SessionmakerScope(_OwnedScope):
    async def open(self) -> Handle:
        maker: async_sessionmaker[AsyncSession] = self.target
        self.handle = session = maker()
        await self._inject()
        return session


class _SessionScope(_Scope):
    async def open(self) -> Handle:
        session: AsyncSession = self.target
        if session.in_transaction():
            raise sa_exc.InvalidRequestError(
                f"{self.loop.api}(): the AsyncSession already has a transaction in "
                "progress; commit or roll it back first (each attempt begins its "
                "own)."
            )
        self.handle = session
        await self._inject()
        return session

    async def abort(self) -> None:
        await _rollback(self.target, self.loop)


async def _rollback(handle: Handle, loop: AttemptLoop) -> None:
    await run_cleanup(
        handle.rollback(),
        terminator(handle),
        f"{loop.api}(): rollback",
        timeout_s=loop.cleanup_bound_s(),
    )


def scope_class(target: Any) -> type[_Scope]:
    if isinstance(target, AsyncEngine):
        return _EngineScope
    if isinstance(target, AsyncConnection):
        return _ConnectionScope
    if isinstance(target, async_sessionmaker):
        return _SessionmakerScope
    return _SessionScope
