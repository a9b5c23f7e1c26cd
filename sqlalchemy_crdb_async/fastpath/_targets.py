"""Where a prepared statement runs: an engine, a connection or a session (internal).

``AsyncEngine``
    Checks a connection out of the engine's pool (``raw_connection()``, so a
    ``CockroachPool`` pings and counts as usual), runs the statement on the
    asyncpg connection with no ``BEGIN``, and gives the connection back with
    no ``ROLLBACK`` and no reset: one round trip. A single statement outside a
    transaction is its own implicit transaction, so a write commits when it
    returns. ``CockroachPool`` returns it with no I/O, as a connection that
    sent nothing its reset undoes (``crdb_clean`` in ``pool/_reset.py``),
    unless the statement may leave session state behind (the pool's judge,
    ``pool/_statements.py``: a function other than a pure builtin, a text
    fragment, a write whose table has a default that can draw a sequence
    value), in which case the connection owes the reset.

    Cancelled, or failed in a way that leaves the connection's state unknown
    (a lost connection, a driver error that is not the server's answer), the
    connection is closed by force (asyncpg ``terminate()``, no round trip) and
    its record returned, so nothing stays checked out and no server session
    is left mid-statement. A server error leaves the connection usable; it
    goes back as usual.

``AsyncConnection`` / ``AsyncSession``
    Runs inside its transaction, begun first if none is (as
    ``connection.execute()`` autobegins), through SQLAlchemy's asyncpg
    adapter's own ``BEGIN`` (isolation level, read-only and deferrable as
    configured). The session flushes pending changes first when it
    autoflushes. So ``run_transaction``, ``retrying_session`` and
    ``RetryingRoute`` bodies use it as they use ``execute()``; committing,
    rolling back and cleanup under cancellation stay theirs. A lost connection
    is invalidated, as SQLAlchemy does on a disconnect, and so is one whose
    statement was cancelled (closed by force first, as on an engine). In a
    ``retrying_session`` body the statement goes through SQLAlchemy's cursor
    (still compiled once), so the session records it and replays it after a
    retryable error like its other statements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.util import greenlet_spawn

from .._cleanup import force_close
from ..errors import FastPathError
from ..retry.replay import _active as _replaying
from ._driver import fetch, via_cursor, wrap_error

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping

    from sqlalchemy.engine import Connection
    from sqlalchemy.engine.interfaces import Dialect
    from sqlalchemy.pool import PoolProxiedConnection

    from ._compile import Plan

__all__ = ["Outcome", "Target", "run"]

Target = AsyncEngine | AsyncConnection | AsyncSession
#: (plan, driver records, result processors, command tag or row count; see
#: ``_driver.rowcount``)
Outcome = tuple["Plan", list[Any], "list[Any] | None", "bytes | int | None"]


def run(
    target: Target,
    plan_for: Callable[[Dialect], Plan],
    params: Mapping[str, Any],
    statement: Any,
) -> Coroutine[Any, Any, Outcome]:
    """The coroutine that runs the statement on ``target`` (see the module
    docstring); a plain function, so the caller awaits the target's own
    coroutine with one frame fewer on every resume."""
    if isinstance(target, AsyncConnection):
        sync_connection = target.sync_connection
        if sync_connection is None:
            raise FastPathError(
                "this AsyncConnection is not started; use it inside "
                "'async with engine.connect() as conn:'"
            )
        return _on_connection(sync_connection, plan_for, params)
    if isinstance(target, AsyncEngine):
        return _on_engine(target, plan_for, params)
    if isinstance(target, AsyncSession):
        return _on_session(target, plan_for, params, statement)
    raise FastPathError(
        "a prepared statement runs on an AsyncEngine, AsyncConnection or "
        f"AsyncSession; got {type(target).__name__}"
    )


async def _on_session(
    session: AsyncSession,
    plan_for: Callable[[Dialect], Plan],
    params: Mapping[str, Any],
    statement: Any,
) -> Outcome:
    sync = await greenlet_spawn(_session_connection, session, statement)
    return await _on_connection(sync, plan_for, params)


def check_driver(dialect: Dialect) -> None:
    if dialect.driver != "asyncpg":
        raise FastPathError(
            "prepared() needs the asyncpg driver (cockroachdb+asyncpg://); this "
            f"engine uses {dialect.name}+{dialect.driver}. Run the statement "
            "with connection.execute() instead, or create the engine with "
            "asyncpg"
        )


async def _on_engine(
    engine: AsyncEngine, plan_for: Callable[[Dialect], Plan], params: Any
) -> Outcome:
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect
    # Compiled (and the driver checked) and the arguments made before a
    # connection is checked out: a wrong parameter costs no checkout.
    plan = plan_for(dialect)
    args = plan.arguments(params)
    try:
        fairy = await greenlet_spawn(sync_engine.raw_connection)
    except dialect.loaded_dbapi.Error as err:
        # raw_connection() lets the driver's error through; engine.connect()
        # would have raised SQLAlchemy's (OperationalError for a failed
        # connect), which is what callers and answer_for() expect.
        raise exc.DBAPIError.instance(
            None, None, err, dialect.loaded_dbapi.Error, dialect=dialect
        ) from err
    driver: Any = fairy.driver_connection
    broken = True  # until the statement's outcome is known
    try:
        records, processors, count = await fetch(driver, plan, args, dialect)
        broken = False
    except Exception as err:
        if _answered(err):
            # The server answered (or asyncpg refused an argument before
            # sending): usable, unless it closed or holds a transaction.
            broken = driver.is_closed() or driver.is_in_transaction()
        raise wrap_error(err, plan, args, dialect, invalidated=broken) from err
    finally:
        await _give_back(fairy, broken=broken, untouched=not plan.touches_session)
    return plan, records, processors, count


def _answered(err: Exception) -> bool:
    """The server's error, or an argument asyncpg could not encode (its
    ``DataError``, an ``InterfaceError`` and ``ValueError``, raised before
    anything is written)."""
    return isinstance(err, asyncpg.PostgresError) or (
        isinstance(err, asyncpg.InterfaceError) and isinstance(err, ValueError)
    )


async def _give_back(
    fairy: PoolProxiedConnection, *, broken: bool, untouched: bool
) -> None:
    if broken:
        # Cancelled mid-statement or lost: its state is unknown. No I/O here
        # (outside the greenlet SQLAlchemy terminates without waiting), so a
        # cancellation cannot interrupt it.
        force_close(fairy)
        fairy.invalidate()
        return
    driver: Any = fairy.driver_connection
    if not untouched and hasattr(driver, "crdb_clean"):
        # A statement that may leave session state behind: CockroachPool's
        # return resets the session (or owes the reset to the next message).
        # Otherwise the connection stays "clean" (a cached prepared
        # statement's fetch does not mark it) and goes back with no I/O.
        driver.crdb_clean = False
    # The default pool's return does no I/O for a connection with no
    # transaction; CockroachPool's bounded cleanup, when it runs, completes
    # under cancellation (sqlalchemy_crdb_async._cleanup).
    await greenlet_spawn(fairy.close)


async def _begin(adapter: Any, driver: Any) -> None:
    """The adapter's own ``BEGIN`` (isolation level, read-only as configured).

    asyncpg makes a ``Transaction`` the connection's top one (``_top_xact``)
    before it sends ``BEGIN`` and leaves it there when the ``BEGIN`` fails or
    is cancelled (asyncpg ``transaction.py``, ``start()``); the adapter keeps
    no reference to it, so the connection's next ``BEGIN`` would go out as a
    ``SAVEPOINT`` and fail. Cleared here.
    """
    try:
        await adapter._start_transaction()
    except BaseException:
        if adapter._transaction is None and getattr(driver, "_top_xact", None):
            driver._top_xact = None
        raise


def _session_connection(session: AsyncSession, statement: Any) -> Connection:
    sync = session.sync_session
    if sync.autoflush:
        sync.flush()
    return sync.connection(bind_arguments={"clause": statement})


def _begun(connection: Connection) -> PoolProxiedConnection:
    if not connection.in_transaction():
        connection.begin()  # what execute() would autobegin
    return connection.connection


async def _on_connection(
    connection: Connection, plan_for: Callable[[Dialect], Plan], params: Any
) -> Outcome:
    dialect = connection.dialect
    plan = plan_for(dialect)  # checks the driver the first time
    args = plan.arguments(params)
    # connection.in_transaction() and connection.connection, read directly
    # (two calls fewer per statement; tests/fastpath/test_private_api.py).
    transaction = connection._transaction
    fairy: Any = connection._dbapi_connection
    if fairy is None or transaction is None or not transaction.is_active:
        # Not begun, or invalidated: SQLAlchemy's own path (which raises
        # PendingRollbackError inside an invalidated transaction, as
        # execute() does).
        fairy = await greenlet_spawn(_begun, connection)
    adapter: Any = fairy.dbapi_connection
    recorder = _replaying.get()
    if recorder is not None and recorder.dbapi_conn is adapter:
        # A retrying_session body: its statements are recorded for replay
        # through the cursor, so this one goes that way too.
        return plan, *await greenlet_spawn(via_cursor, connection, plan, args)
    # SQLAlchemy's adapter keeps the asyncpg connection as ``_connection``
    # (what fairy.driver_connection returns, three calls away).
    driver: Any = adapter._connection
    mutex = adapter._execute_mutex  # SQLAlchemy's, as its cursor takes it
    try:
        await mutex.acquire()
        try:
            if adapter._transaction is None:
                await _begin(adapter, driver)
            records, processors, count = await fetch(driver, plan, args, dialect)
        finally:
            mutex.release()
        if plan.touches_session and hasattr(driver, "crdb_clean"):
            # As on an engine (_give_back): CockroachPool resets the session
            # on return only if something sent may have left state behind.
            driver.crdb_clean = False
    except Exception as err:
        lost = driver.is_closed()
        if lost:
            await greenlet_spawn(connection.invalidate, err)
        raise wrap_error(err, plan, args, dialect, invalidated=lost) from err
    except BaseException as err:
        # Cancelled mid-statement: as SQLAlchemy does for an exit exception,
        # the connection is invalidated (closed by force, no I/O, so the
        # cancellation cannot interrupt it); the owner rolls back as usual.
        force_close(fairy)
        connection.invalidate(err)
        raise
    return plan, records, processors, count
