"""Cleanup that completes under cancellation, within a bound (internal).

One rule for every cleanup in the package (the retry helpers, the replay
session, the pool's session reset):

1. The whole cleanup *sequence* of a session or connection (rollback, then
   close; or the pool's reset) is one coroutine, run by :func:`run_cleanup` as
   one task of its own, started eagerly: its first step runs at once, in
   place, and a cleanup that completes without waiting for anything (a
   committed connection going back to the pool with nothing to reset) needs
   no task at all. Only the first time it must wait does the rest become a
   task. Its steps never run concurrently with each other, and the caller's
   cancellation never reaches them (asyncio delivers a cancellation only at
   an ``await`` that suspends, and the first step ends at the first one).
2. The caller waits for that task through any number of cancellations (an
   anyio cancel scope re-delivers its cancellation on every turn of the event
   loop; ``task.cancel()`` delivers it once), for at most
   :data:`CLEANUP_TIMEOUT_S` seconds from the start of the cleanup.
3. Past the bound the task is cancelled, the connection is closed by force
   (the ``force`` callback: asyncpg's ``Connection.terminate()``, or
   SQLAlchemy's invalidation for other drivers; :func:`terminator` builds it
   for an ``AsyncSession`` or ``AsyncConnection``) and a WARNING is logged; the
   caller then waits up to :data:`FORCE_GRACE_S` more for the task to notice.
4. Then the first cancellation received, if any, is re-raised. A cleanup that
   fails is logged at WARNING and its connection force-closed (its state is
   unknown), not raised: it must not hide the error that made the cleanup
   necessary (psycopg_pool treats a failed rollback the same way).

So when a cancelled caller's ``await`` returns, its connection is back in the
pool and the server holds no transaction for it, or the connection is closed.

Eager start is Python 3.12's ``asyncio.Task(..., eager_start=True)``; on
Python 3.11 :func:`_start` does the same by hand (the first step runs in the
task's copied context, then a task continues the coroutine from the
awaitable it stopped at), with one difference: during that first step
``asyncio.current_task()`` is still the caller's task. The cleanups run here
(SQLAlchemy's close and rollback through its greenlet, asyncpg's protocol,
the pool's reset) never ask. On Python 3.10 every cleanup is a task.
Measured on the request path of the FastAPI route, where every committed
attempt closes its connection: about 25-45 us of client CPU less per
transaction (benchmarks/README.md).

Models: SQLAlchemy's ``ext/asyncio/base.py`` ``_run_to_completion`` (one task
for the whole exit sequence, awaited through repeated cancellation, but with
no bound), anyio's ``move_on_after(..., shield=True)``, asyncpg's ``pool.py``
(a connection whose operation was cancelled is terminated).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import types
from typing import TYPE_CHECKING, Any, Final

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Generator, Iterator

    from sqlalchemy.engine import Connection
    from sqlalchemy.pool import ManagesConnection, PoolProxiedConnection

__all__ = [
    "CLEANUP_TIMEOUT_S",
    "FORCE_GRACE_S",
    "force_close",
    "run_cleanup",
    "terminator",
]

log = logging.getLogger("sqlalchemy_crdb_async.cleanup")

#: How long a cleanup may take, from its start, before its connection is
#: closed by force. A rollback or session reset is one round trip; five
#: seconds covers a slow network and a loaded server.
CLEANUP_TIMEOUT_S: Final = 5.0
#: After the force-close, how long the caller still waits for the cleanup task
#: to notice its connection is gone (it fails at its next read).
FORCE_GRACE_S: Final = 1.0

#: Cleanup tasks that outlived even the grace period (kept referenced).
_detached: set[asyncio.Future[Any]] = set()


async def run_cleanup(
    cleanup: Coroutine[Any, Any, Any],
    force: Callable[[], None] | None,
    what: str,
    *,
    timeout_s: float = CLEANUP_TIMEOUT_S,
) -> bool:
    """Run ``cleanup`` to completion as one task, bounded; see the module docstring.

    ``force`` closes the connection by force when the bound passes or the
    cleanup fails; ``what`` names the cleanup in log messages; ``timeout_s``
    is the bound (a retry helper near its deadline passes less than
    :data:`CLEANUP_TIMEOUT_S`, so the deadline holds). Returns whether
    the cleanup completed without error (False: it was forced). Re-raises the
    caller's cancellation, if any, after the cleanup (or the force-close).
    """
    loop = asyncio.get_running_loop()
    task = _start(loop, cleanup)
    cancelled = await _wait(task, loop.time() + timeout_s, None)
    if not task.done():
        log.warning(
            "%s did not finish within %.3g s; closing its connection by force",
            what,
            timeout_s,
        )
        task.cancel()
        _force(force, what)
        cancelled = await _wait(task, loop.time() + FORCE_GRACE_S, cancelled)
        if task.done():
            _failure(task)  # retrieved, so asyncio does not log it again
        else:
            _detached.add(task)
            task.add_done_callback(_forget)
        ok = False
    elif (failure := _failure(task)) is not None:
        log.warning(
            "%s failed; closing its connection by force", what, exc_info=failure
        )
        _force(force, what)
        ok = False
    else:
        ok = True
    if cancelled is not None:
        raise cancelled
    return ok


def _start(
    loop: asyncio.AbstractEventLoop, cleanup: Coroutine[Any, Any, Any]
) -> asyncio.Future[Any]:
    """``cleanup`` started eagerly (see the module docstring): a task, or a
    future already done when the cleanup completed in its first step."""
    if _EAGER_TASKS:
        return asyncio.Task(cleanup, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    if sys.version_info < (3, 11):  # no create_task(context=)
        return loop.create_task(cleanup)
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(cleanup.send, None)
    except StopIteration as stop:
        done = loop.create_future()
        done.set_result(stop.value)
        return done
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        failed = loop.create_future()
        if isinstance(error, asyncio.CancelledError):
            failed.cancel()
        else:
            failed.set_exception(error)
        return failed
    return loop.create_task(_continue(cleanup, waiting_on), context=context)


#: Python 3.12+: asyncio starts tasks eagerly itself.
_EAGER_TASKS: Final = sys.version_info >= (3, 12)


async def _continue(cleanup: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """The rest of ``cleanup``, which stopped at ``waiting_on`` in its first step."""
    return await _resumed(cleanup, waiting_on)


@types.coroutine
def _resumed(
    cleanup: Coroutine[Any, Any, Any], waiting_on: Any
) -> Generator[Any, Any, Any]:
    # The task this runs in waits for what the cleanup waits for (asyncio's
    # Future protocol: the future yields itself, still marked as blocking),
    # then sends the cleanup what the task was sent or throws what it caught:
    # ``yield from`` for a coroutine already past its first step.
    while True:
        try:
            received = yield waiting_on
        except BaseException as error:
            try:
                waiting_on = cleanup.throw(error)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting_on = cleanup.send(received)
            except StopIteration as stop:
                return stop.value


async def _wait(
    task: asyncio.Future[Any], deadline: float, cancelled: BaseException | None
) -> BaseException | None:
    """Wait for ``task`` until ``deadline`` through cancellations; return the first."""
    loop = asyncio.get_running_loop()
    # Bounded: each turn either ends the wait or consumes one cancellation,
    # and a cancel scope delivers at most one per loop iteration.
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            # asyncio.wait never cancels the task it waits for.
            await asyncio.wait((task,), timeout=remaining)
        except asyncio.CancelledError as err:
            if cancelled is None:
                cancelled = err
    return cancelled


def _failure(task: asyncio.Future[Any]) -> BaseException | None:
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception()


def _forget(task: asyncio.Future[Any]) -> None:
    _detached.discard(task)
    if task.done():
        _failure(task)


def _force(force: Callable[[], None] | None, what: str) -> None:
    if force is None:
        return
    try:
        force()
    except Exception:
        log.warning("force-closing the connection of %s failed", what, exc_info=True)


def force_close(conn: ManagesConnection) -> None:
    """Close a pooled connection (record or checked-out proxy) now, no round trip.

    asyncpg: ``Connection.terminate()`` (closes the socket at once; the pool
    sees the dead connection when the record comes back). Other drivers:
    SQLAlchemy's invalidation, which outside its greenlet also closes without
    waiting.
    """
    driver = conn.driver_connection
    if isinstance(driver, asyncpg.Connection):
        if not driver.is_closed():
            driver.terminate()
    elif conn.dbapi_connection is not None:
        conn.invalidate()


def terminator(handle: AsyncSession | AsyncConnection) -> Callable[[], None]:
    """A ``force`` callback that force-closes what ``handle`` holds when called."""

    def force() -> None:
        for fairy in _fairies(handle):
            force_close(fairy)

    return force


def _fairies(handle: AsyncSession | AsyncConnection) -> Iterator[PoolProxiedConnection]:
    connections: list[Connection] = []
    if isinstance(handle, AsyncConnection):
        if handle.sync_connection is not None:
            connections.append(handle.sync_connection)
    else:
        transaction = handle.sync_session.get_transaction()
        # SessionTransaction._connections: bind -> (Connection, Transaction,
        # should_commit, autoclose); private, hence the defensive getattr.
        held = getattr(transaction, "_connections", None) or {}
        connections.extend(entry[0] for entry in held.values())
    for conn in connections:
        # Connection.connection does no I/O while the connection is open and
        # valid (it returns the checked-out pool connection).
        if not conn.closed and not conn.invalidated:
            yield conn.connection
