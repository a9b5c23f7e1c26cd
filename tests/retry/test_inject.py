"""Retry-error injection is switched off before a connection goes back to the pool.

CockroachDB keeps a SET after ROLLBACK
(https://github.com/cockroachdb/cockroach/issues/69396), so the switch-off
must be sent on every ending of an attempt, not only after a commit. PostgreSQL
has no ``inject_retry_errors_enabled``: here the helpers set a custom variable of
the same role instead, and the test reads the statements sent through the DBAPI
cursors of the one pooled connection (a recording wrapper around the driver
adapter's ``cursor.execute``, which both SQLAlchemy and the pool listener
call). The variable itself on CockroachDB: the crdb_only tests in
test_helpers.py.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sqlalchemy_crdb_async import RetryPolicy, retrying_session, run_transaction
from sqlalchemy_crdb_async.retry import _loop
from tests.retry.support import fail_times, install, new_counter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

VARIABLE = "crdb_async_test.inject_retry_errors_enabled"
POLICY = RetryPolicy(inject_retry_errors=True, initial_backoff_s=0.001)


class Boom(Exception):
    pass


@pytest.fixture
async def logged(
    crdb_url: URL, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[AsyncEngine, list[str]]]:
    """An engine with one pooled connection; every statement sent is logged."""
    eng = create_async_engine(crdb_url, pool_size=1, max_overflow=0)
    if eng.dialect.is_cockroachdb:  # type: ignore[attr-defined]
        await eng.dispose()
        pytest.skip("stands in a custom variable for CockroachDB's on PostgreSQL")
    monkeypatch.setattr(_loop, "INJECT_VARIABLE", VARIABLE)
    monkeypatch.setattr(_loop, "_injection_supported", lambda dialect: True)
    log: list[str] = []
    async with eng.connect() as conn:
        raw = await conn.get_raw_connection()
        cursor_class = type(raw.dbapi_connection.cursor())  # type: ignore[union-attr]
    original = cursor_class.execute

    def recording(self: Any, operation: Any, *args: Any, **kw: Any) -> Any:
        log.append(str(operation))
        return original(self, operation, *args, **kw)

    monkeypatch.setattr(cursor_class, "execute", recording)
    await install(eng)
    try:
        yield eng, log
    finally:
        await eng.dispose()


def _sets(log: list[str]) -> list[str]:
    return [q.split("=")[-1].strip() for q in log if q.startswith(f"SET {VARIABLE}")]


def _switched_off(log: list[str]) -> bool:
    sets = _sets(log)
    return "true" in sets and sets[-1] == "false"


async def _fail(handle: Any) -> None:
    raise Boom


@pytest.mark.parametrize("kind", ["engine", "sessionmaker"])
async def test_off_after_an_error(
    logged: tuple[AsyncEngine, list[str]], kind: str
) -> None:
    eng, log = logged
    target: Any = eng if kind == "engine" else async_sessionmaker(eng)
    with pytest.raises(Boom):
        await run_transaction(target, _fail, policy=POLICY)
    assert _switched_off(log), _sets(log)


@pytest.mark.parametrize("kind", ["connection", "session"])
async def test_off_when_a_callers_handle_goes_back(
    logged: tuple[AsyncEngine, list[str]], kind: str
) -> None:
    eng, log = logged
    handle: AsyncConnection | AsyncSession
    handle = eng.connect() if kind == "connection" else AsyncSession(eng)
    async with handle:
        with pytest.raises(Boom):
            await run_transaction(handle, _fail, policy=POLICY)
    assert _switched_off(log), _sets(log)


async def test_off_after_retries_and_a_commit(
    logged: tuple[AsyncEngine, list[str]],
) -> None:
    eng, log = logged
    seq = await new_counter(eng)
    calls = 0

    async def work(conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        await fail_times(conn, 2, seq)  # a real 40001 from the server, twice

    await run_transaction(eng, work, policy=POLICY)
    assert calls == 3
    assert _switched_off(log), _sets(log)


async def test_off_after_a_cancellation(
    logged: tuple[AsyncEngine, list[str]],
) -> None:
    eng, log = logged
    started = asyncio.Event()

    async def wait_forever(conn: AsyncConnection) -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(run_transaction(eng, wait_forever, policy=POLICY))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _switched_off(log), _sets(log)


@pytest.mark.parametrize("cancel", [False, True])
async def test_retrying_session_switches_off(
    logged: tuple[AsyncEngine, list[str]], cancel: bool
) -> None:
    eng, log = logged
    started = asyncio.Event()

    async def body() -> None:
        async with retrying_session(eng, policy=POLICY):
            started.set()
            if cancel:
                await asyncio.Event().wait()
            raise Boom

    task = asyncio.create_task(body())
    await started.wait()
    if cancel:
        task.cancel()
    with pytest.raises(asyncio.CancelledError if cancel else Boom):
        await task
    assert _switched_off(log), _sets(log)


def test_sync_run_transaction_switches_off_after_an_error(
    crdb_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import create_engine

    from sqlalchemy_crdb_async.sync import run_transaction as sync_run_transaction

    eng = create_engine(
        crdb_url.set(drivername="cockroachdb+psycopg"), pool_size=1, max_overflow=0
    )
    try:
        with eng.connect() as conn:
            if eng.dialect.is_cockroachdb:  # type: ignore[attr-defined]
                pytest.skip("stands in a custom variable for CockroachDB's")
            raw = conn.connection.dbapi_connection
            cursor_class = type(raw.cursor())  # type: ignore[union-attr]
        monkeypatch.setattr(_loop, "INJECT_VARIABLE", VARIABLE)
        monkeypatch.setattr(_loop, "_injection_supported", lambda dialect: True)
        log: list[str] = []
        original = cursor_class.execute

        def recording(self: Any, query: Any, *args: Any, **kw: Any) -> Any:
            log.append(str(query))
            return original(self, query, *args, **kw)

        monkeypatch.setattr(cursor_class, "execute", recording)

        def fail(conn: Any) -> None:
            raise Boom

        with pytest.raises(Boom):
            sync_run_transaction(eng, fail, policy=POLICY)
        assert _switched_off(log), _sets(log)
    finally:
        eng.dispose()


@pytest.mark.parametrize("kind", ["sessionmaker", "session"])
async def test_off_after_a_commit_through_a_session(
    logged: tuple[AsyncEngine, list[str]], kind: str
) -> None:
    eng, log = logged

    async def work(session: AsyncSession) -> int:
        return int((await session.execute(text("SELECT 1"))).scalar_one())

    if kind == "sessionmaker":
        assert await run_transaction(async_sessionmaker(eng), work, policy=POLICY) == 1
    else:
        async with AsyncSession(eng) as session:
            assert await run_transaction(session, work, policy=POLICY) == 1
    assert _switched_off(log), _sets(log)
