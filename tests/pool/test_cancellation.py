"""CockroachPool under cancellation, and its maintenance task's owner.

Returning a connection and disposing the pool are cleanups: under an anyio
cancel scope (asyncio and uvloop) they still finish, so nothing stays checked
out, in a transaction, or open. The maintenance task is started by the pool,
sleeps while nothing is due, is cancelled when another event loop takes over,
and is done once ``dispose()`` returns.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from sqlalchemy_crdb_async.pool._maintenance import Maintenance
from sqlalchemy_crdb_async.pool._reset import SessionReset
from tests.cancelling import BACKENDS, AppEngine, backends, run, until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import URL


_apps = itertools.count()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "return_path",
    ["round trip", "quiet"],
)
def test_close_under_a_cancelled_scope_resets_and_returns_the_connection(
    crdb_url: URL,
    backend: dict[str, Any],
    return_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both return paths: the reset sent on return as one shielded cleanup
    (forced here: a return that needs a round trip, as one with a leftover
    transaction or a driver other than asyncpg does), and the quiet one, where
    the reset is owed to the next first message and nothing is awaited."""
    if return_path == "round trip":
        monkeypatch.setattr(
            SessionReset, "settle_quietly", lambda self, driver, crdb: False
        )

    async def main() -> None:
        e = AppEngine(crdb_url)
        try:
            # the pool owes a reset only once one sent on return succeeded
            async with e.engine.connect() as first:
                await first.exec_driver_sql("SELECT 1")
                await first.commit()
            conn = await e.engine.connect()
            await conn.exec_driver_sql("SET statement_timeout = 1234")
            await conn.commit()
            # (a transaction still open here would be rolled back by
            # SQLAlchemy's Connection.close() before the pool sees the
            # connection; cancelled, SQLAlchemy invalidates the connection)
            with anyio.CancelScope() as scope:
                scope.cancel()  # delivered again at every await of close()
                await conn.close()
            # the quiet return awaits nothing, so nothing can be cancelled
            assert scope.cancelled_caught is (return_path == "round trip")
            assert e.pool.checkedout() == 0
            # rolled back and reset (or owing it), not thrown away: open, idle
            (driver,) = e.drivers
            assert not driver.is_closed()
            assert (driver.crdb_owed is not None) is (return_path == "quiet")
            pid = driver.get_server_pid()
            assert await backends(e.admin, e.app, f"pid = {pid} AND state = 'idle'")
            async with e.engine.connect() as again:  # the same connection, reset
                show = await again.exec_driver_sql("SHOW statement_timeout")
                assert show.scalar_one() == "0"
        finally:
            await e.close()

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cancelled_dispose_still_closes_every_connection(
    crdb_url: URL, backend: dict[str, Any]
) -> None:
    async def main() -> None:
        e = AppEngine(crdb_url, pool_size=4)
        try:
            conns = [await e.engine.connect() for _ in range(4)]
            for conn in conns:
                await conn.exec_driver_sql("SELECT 1")
            for conn in conns:
                await conn.close()
            assert len(e.drivers) == 4
            with anyio.CancelScope() as scope:
                scope.cancel()
                await e.engine.dispose()
            assert scope.cancelled_caught
            assert all(d.is_closed() for d in e.drivers)

            async def gone() -> bool:
                return await backends(e.admin, e.app, "true") == 0

            await until(gone, "the server to end the disposed connections")
        finally:
            await e.close()

    run(backend, main)


# -- the maintenance task ------------------------------------------------------


async def test_maintenance_task_is_done_after_dispose(crdb_url: URL) -> None:
    e = AppEngine(crdb_url)
    try:
        async with e.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
        task = e.pool._maintenance.task
        assert task is not None
        assert not task.done()
        await e.engine.dispose()
        assert task.done()
    finally:
        await e.close()


async def test_maintenance_sleeps_while_nothing_is_due(crdb_url: URL) -> None:
    # No lifetime: nothing ever falls due. An interval of 10 ms would have
    # woken the old task about 20 times in the window below.
    e = AppEngine(crdb_url, max_lifetime_s=None, maintenance_interval_s=0.01)
    try:
        async with e.engine.connect() as a, e.engine.connect() as b:
            await a.exec_driver_sql("SELECT 1")
            await b.exec_driver_sql("SELECT 1")
        m = e.pool._maintenance
        await asyncio.sleep(0.2)  # an observation window, not synchronisation
        assert m.passes == 0
        assert m.sleeping_until is None
    finally:
        await e.close()


async def test_maintenance_sleeps_until_the_earliest_deadline(crdb_url: URL) -> None:
    e = AppEngine(crdb_url, max_lifetime_s=3600.0, lifetime_jitter_fraction=0.5)
    try:
        async with e.engine.connect() as a, e.engine.connect() as b:
            await a.exec_driver_sql("SELECT 1")
            await b.exec_driver_sql("SELECT 1")
        m = e.pool._maintenance
        earliest = e.pool._next_due()
        assert earliest is not None

        async def asleep_until_earliest() -> bool:
            return m.sleeping_until == earliest

        await until_async(asleep_until_earliest, "the task to sleep until the deadline")
        assert m.passes == 0
    finally:
        await e.close()


async def until_async(predicate: Any, what: str) -> None:
    for _ in range(1000):  # at most 20 s
        if await predicate():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"gave up waiting for {what}")


class _IdlePool:
    """Stands in for the pool: nothing is ever due."""

    def _next_due(self) -> float | None:
        return None

    def _close_idle_due(self) -> None:
        raise AssertionError("nothing is due")


class _DueLater(_IdlePool):
    """Stands in for the pool: a connection falls due in an hour."""

    def _next_due(self) -> float | None:
        return time.monotonic() + 3600.0


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def test_a_new_event_loop_cancels_the_old_loops_task(
    other_loop: asyncio.AbstractEventLoop,
) -> None:
    pool = _IdlePool()
    m = Maintenance(pool, 1.0)  # type: ignore[arg-type]

    async def start() -> asyncio.Task[None]:
        m.ensure()
        assert m.task is not None
        return m.task

    old = asyncio.run_coroutine_threadsafe(start(), other_loop).result(timeout=10)
    m.ensure()  # on this test's loop
    assert m.task is not None
    assert m.task is not old

    async def old_cancelled() -> bool:
        await asyncio.sleep(0)
        return old.cancelled()

    assert asyncio.run_coroutine_threadsafe(old_cancelled(), other_loop).result(10)
    await m.stop()
    assert m.task is None


async def test_stopping_the_task_as_it_is_woken_still_ends_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A cancellation that arrives as the task's wake-up event is set must not
    # be lost (asyncio.wait_for lost it before Python 3.12), or stop() waits
    # out its bound and logs a warning.
    pool = _DueLater()  # held: the task holds its pool weakly
    for _ in range(5):
        m = Maintenance(pool, 1.0)  # type: ignore[arg-type]
        m.ensure()
        task = m.task
        assert task is not None

        async def asleep(m: Maintenance = m) -> bool:
            return m.sleeping_until is not None

        await until_async(asleep, "the task to wait for a wake-up")
        m.note(0.0)  # earlier: sets the event; the task has not run yet
        await m.stop()
        assert task.done()
    assert "did not finish" not in caplog.text
