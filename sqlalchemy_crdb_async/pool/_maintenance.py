"""The pool's background task, owned by the pool.

:class:`~._pool.CockroachPool` owns one :class:`Maintenance`. The task closes
idle connections that are due: past their lifetime, lost while idle (the
server closed them), or to a host that is draining.

Interface
    This module knows the pool only as :class:`MaintainedPool`, the five
    methods the task and :func:`dispose` call (when is the next connection
    due, take the idle ones out, why is one due, put the good ones back,
    return a closed one); it never imports the pool.

Owner
    The pool starts the task at its first checkout on a running event loop
    (:meth:`Maintenance.ensure`, from ``_do_get``) and stops it in
    ``dispose()``: cancelled and awaited when ``dispose()`` runs in
    SQLAlchemy's greenlet, which is where ``AsyncEngine.dispose()`` runs it
    (``greenlet_spawn(sync_engine.dispose)``); cancelled only when a sync
    caller disposes. A checkout on another event loop (a new ``asyncio.run``)
    cancels the old loop's task before starting one on the new loop.
Sleep
    The task sleeps until the earliest deadline of an idle connection, or, with
    none, until woken: :meth:`Maintenance.note` wakes it when a returned or new
    connection's deadline is earlier than the one it sleeps until, and
    :meth:`Maintenance.wake` when a connection is lost or a host drains. So an
    idle pool whose connections have no lifetime never wakes it. Two passes
    are at least ``maintenance_interval_s`` apart, which bounds the work when
    many connections fall due together.
Cancellation
    A pass closes its connections as one bounded cleanup
    (:mod:`sqlalchemy_crdb_async._cleanup`); the records it took out of the
    pool's queue go back (closed) even when the task is cancelled midway.

The task holds the pool weakly and ends when the pool is garbage-collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.util import await_only, greenlet_spawn
from sqlalchemy.util.concurrency import in_greenlet

from .._cleanup import force_close, run_cleanup

if TYPE_CHECKING:
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "MaintainedPool",
    "Maintenance",
    "close_idle_due",
    "close_records",
    "dispose",
]

log = logging.getLogger(__name__)


class MaintainedPool(Protocol):
    """What the maintenance task and :func:`dispose` need of their pool."""

    def _next_due(self) -> float | None:
        """When the next idle connection falls due (``time.monotonic()``)."""

    def _take_idle(self) -> list[ConnectionPoolEntry]:
        """Take every idle record out of the pool's queue."""

    def _due_reason(self, record: ConnectionPoolEntry, now: float) -> str | None:
        """Why an idle record is due for closing (and count it), or None."""

    def _put_back_idle(self, records: list[ConnectionPoolEntry]) -> None:
        """Put records taken out and still good back, in the order taken."""

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        """Return a (closed) record to the pool."""


class Maintenance:
    """Start, wake, stop and await one pool's maintenance task."""

    def __init__(self, pool: MaintainedPool, interval_s: float) -> None:
        self._pool_ref = weakref.ref(pool, self._pool_gone)
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        #: monotonic time the task sleeps until; None while it waits to be woken.
        self.sleeping_until: float | None = None
        #: Passes run (each closes whatever idle connections are due).
        self.passes = 0
        self._pass_wanted = False

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def ensure(self) -> None:
        """Start the task on the running loop, unless it runs there already."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = self._task
        if task is not None and not task.done():
            if task.get_loop() is loop:
                return
            _cancel_elsewhere(task)
        self._wake = asyncio.Event()
        self.sleeping_until = None
        self._task = loop.create_task(
            self._run(self._wake),
            name=f"sqlalchemy_crdb_async pool maintenance {id(self):#x}",
        )

    def wake(self) -> None:
        """Run a pass soon (a connection was lost, a host drains)."""
        if self._wake is not None:
            self._pass_wanted = True
            self._wake.set()

    def note(self, deadline: float | None) -> None:
        """A connection with ``deadline`` went idle: wake if it is due earlier."""
        if deadline is None or self._wake is None:
            return
        until = self.sleeping_until
        if until is None or deadline < until:
            self._wake.set()

    async def stop(self) -> None:
        """Cancel the task and wait for it (bounded, through cancellations)."""
        task, self._task, self._wake = self._task, None, None
        if task is None or task.done():
            return
        if task.get_loop() is not asyncio.get_running_loop():
            _cancel_elsewhere(task)
            return
        task.cancel()
        await run_cleanup(_settle(task), None, "stopping the pool maintenance task")

    def stop_nowait(self) -> None:
        """Cancel the task without waiting (no event loop to wait on)."""
        task, self._task, self._wake = self._task, None, None
        if task is not None and not task.done():
            _cancel_elsewhere(task)

    def _pool_gone(self, _: Any) -> None:
        self.stop_nowait()

    async def _run(self, wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        earliest = loop.time()
        while True:
            wake.clear()
            pool = self._pool_ref()
            if pool is None:
                return
            due = pool._next_due()
            del pool
            # deadlines are time.monotonic() values
            now = time.monotonic()
            if not self._pass_wanted and (due is None or due > now):
                self.sleeping_until = due
                # Woken (a new deadline or a pass wanted) or due: either way
                # re-plan. Not asyncio.wait_for: before Python 3.12 it can
                # swallow a cancellation that arrives as the event is set
                # (https://github.com/python/cpython/issues/86296), and then
                # stop() would wait for a task that never ends.
                alarm = None if due is None else loop.call_later(due - now, wake.set)
                try:
                    await wake.wait()
                finally:
                    self.sleeping_until = None
                    if alarm is not None:
                        alarm.cancel()
                continue
            self._pass_wanted = False
            pause = earliest - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            earliest = loop.time() + self._interval_s
            pool = self._pool_ref()
            if pool is None:
                return
            self.passes += 1
            try:
                await greenlet_spawn(close_idle_due, pool)
            except Exception:
                log.exception("pool maintenance failed")
            del pool


def dispose(pool: MaintainedPool, maintenance: Maintenance) -> None:
    """Stop the maintenance task, then close every idle connection, as one cleanup.

    The pool's ``dispose()``. In SQLAlchemy's greenlet the whole sequence is
    one bounded cleanup (:mod:`sqlalchemy_crdb_async._cleanup`): a
    cancellation midway still closes every connection taken out of the queue.
    The task is stopped first, since a pass in progress puts records back.
    """
    if not in_greenlet():
        maintenance.stop_nowait()
        for record in pool._take_idle():
            record.close()
        return
    taken: list[ConnectionPoolEntry] = []

    async def sequence() -> None:
        await maintenance.stop()
        taken.extend(pool._take_idle())
        await greenlet_spawn(_close_all, taken)

    def force() -> None:
        for record in taken:
            force_close(record)

    await_only(run_cleanup(sequence(), force, "disposing the pool"))


def close_idle_due(pool: MaintainedPool) -> None:
    """Take idle connections due for closing out of the queue and close them.

    Those still good go back in the order they came out; the due ones are
    closed as one bounded cleanup and their records returned (closed) even
    when the pass is cancelled.
    """
    now = time.monotonic()
    due: list[ConnectionPoolEntry] = []
    keep: list[ConnectionPoolEntry] = []
    for record in pool._take_idle():
        reason = pool._due_reason(record, now)
        if reason is None:
            keep.append(record)
        else:
            due.append(record)
    pool._put_back_idle(keep)
    try:
        close_records(due, "closing idle connections that are due")
    finally:
        for record in due:
            pool._do_return_conn(record)


def close_records(records: list[ConnectionPoolEntry], what: str) -> None:
    """Close ``records`` as one bounded cleanup: all of them, even if cancelled.

    Called by the pool in SQLAlchemy's greenlet (or, with no event loop, from a
    sync caller, where they are simply closed one by one).
    """
    if not records:
        return
    if not in_greenlet():
        for record in records:
            record.close()
        return

    def force() -> None:
        for record in records:
            force_close(record)

    await_only(run_cleanup(greenlet_spawn(_close_all, records), force, what))


def _close_all(records: list[ConnectionPoolEntry]) -> None:
    for record in records:
        try:
            record.close()
        except Exception:
            log.exception("closing a connection failed")


async def _settle(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _cancel_elsewhere(task: asyncio.Task[None]) -> None:
    """Cancel a task from any thread; a task whose loop is closed never runs."""
    loop = task.get_loop()
    if loop.is_closed():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        task.cancel()
    else:
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            loop.call_soon_threadsafe(task.cancel)
