"""A committed attempt on an engine returns its connection in the same trip
into SQLAlchemy's greenlet as its COMMIT, when nothing in that return can
wait (asyncpg, no pool ``checkin``/``reset`` listener; retry/_scopes.py); a
failed return is logged and the connection closed by force, the commit
stands. Otherwise the return is the shielded cleanup as before."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection

from sqlalchemy_crdb_async import RetryPolicy, run_transaction
from sqlalchemy_crdb_async.retry import _scopes

if TYPE_CHECKING:
    import pytest
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from sqlalchemy.pool import QueuePool

FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01)


async def _table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE IF EXISTS committed_return")
        await conn.exec_driver_sql("CREATE TABLE committed_return (id INT PRIMARY KEY)")


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql("SELECT count(*) FROM committed_return")
        return int(result.scalar_one())


async def _insert(conn: AsyncConnection) -> None:
    await conn.exec_driver_sql("INSERT INTO committed_return VALUES (1)")


async def test_the_return_rides_with_the_commit(engine: AsyncEngine) -> None:
    await _table(engine)
    seen: list[bool] = []
    original = _scopes._quiet_return

    def spy(sync: Connection) -> bool:
        seen.append(original(sync))
        return seen[-1]

    pool: QueuePool = engine.sync_engine.pool  # type: ignore[assignment]
    try:
        _scopes._quiet_return = spy
        await run_transaction(engine, _insert, policy=FAST)
    finally:
        _scopes._quiet_return = original
    assert seen == [True]
    assert pool.checkedout() == 0
    assert await _count(engine) == 1


async def test_a_pool_listener_keeps_the_shielded_return(engine: AsyncEngine) -> None:
    await _table(engine)
    returned: list[Any] = []

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        returned.append(record)

    pool = engine.sync_engine.pool
    event.listen(pool, "checkin", on_checkin)
    try:
        async with engine.connect() as conn:
            assert conn.sync_connection is not None
            assert _scopes._quiet_return(conn.sync_connection) is False
        returned.clear()
        await run_transaction(engine, _insert, policy=FAST)
    finally:
        event.remove(pool, "checkin", on_checkin)
    assert len(returned) == 1
    assert await _count(engine) == 1


async def test_a_failed_return_after_commit_is_logged_and_forced(
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _table(engine)
    original_close = Connection.close
    failures: list[bool] = []

    def close_once(self: Connection) -> None:
        if not failures and not self.in_transaction():
            failures.append(True)
            raise OSError("the socket broke while returning")
        original_close(self)

    monkeypatch.setattr(Connection, "close", close_once)
    with caplog.at_level(logging.WARNING, logger="sqlalchemy_crdb_async.retry"):
        await run_transaction(engine, _insert, policy=FAST)  # the commit stands
    monkeypatch.setattr(Connection, "close", original_close)
    assert failures == [True]
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert any(
        "returning a committed connection failed" in r.message for r in caplog.records
    )
    assert await _count(engine) == 1
