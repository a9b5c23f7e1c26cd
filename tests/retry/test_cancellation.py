"""The retry helpers cancelled by anyio cancel scopes, on asyncio and uvloop.

A body is cancelled while the server runs one of its statements
(``pg_sleep``) or its COMMIT (a deferred trigger that sleeps). When the
cancelled scope exits, the pool has nothing checked out, and no connection
still open on the client is in a transaction on the server; connections that
cleanup closed by force disappear from the server too, and nothing was
committed.
"""

from __future__ import annotations

import itertools
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from sqlalchemy_crdb_async import (
    RetryPolicy,
    _cleanup,
    retrying,
    retrying_session,
    run_transaction,
)
from tests.cancelling import (
    BACKENDS,
    MECHANISMS,
    AppEngine,
    backends,
    cancel_when,
    run,
    until,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from sqlalchemy.engine import URL

SETUP = [
    "CREATE TABLE IF NOT EXISTS cancel_rows (id serial PRIMARY KEY, tag text)",
    "CREATE TABLE IF NOT EXISTS slow_commit (id serial PRIMARY KEY, tag text)",
    """
    CREATE OR REPLACE FUNCTION slow_commit_check() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(10); RETURN NULL; END $$
    """,
    "DROP TRIGGER IF EXISTS slow_commit_deferred ON slow_commit",
    """
    CREATE CONSTRAINT TRIGGER slow_commit_deferred AFTER INSERT ON slow_commit
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit_check()
    """,
]
APIS = ["run_transaction_engine", "run_transaction_session", "retrying", "replay"]
WHERE = ["statement", "commit"]
_apps = itertools.count()


@pytest.fixture(scope="module")
def schema(crdb_url: URL) -> URL:
    async def setup() -> None:
        engine = create_async_engine(crdb_url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                for statement in SETUP:
                    await conn.exec_driver_sql(statement)
        finally:
            await engine.dispose()

    run({"use_uvloop": False}, setup)
    return crdb_url


async def _conn(handle: AsyncConnection | AsyncSession) -> AsyncConnection:
    return await handle.connection() if isinstance(handle, AsyncSession) else handle


async def _run_api(
    api: str, engine: AsyncEngine, work: Callable[[Any], Awaitable[None]]
) -> None:
    policy = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01)
    if api == "run_transaction_engine":
        await run_transaction(engine, work, policy=policy)
    elif api == "run_transaction_session":
        await run_transaction(async_sessionmaker(engine), work, policy=policy)
    elif api == "retrying":
        async for attempt in retrying(async_sessionmaker(engine), policy=policy):
            async with attempt as session:
                await work(session)
    else:
        async with retrying_session(engine, policy=policy) as session:
            await work(session)


class _Harness(AppEngine):
    """What the server sees of the retry helpers' engine."""

    async def running(self, sql_like: str) -> bool:
        where = f"state = 'active' AND query ILIKE '{sql_like}'"
        return await backends(self.admin, self.app, where) > 0

    async def assert_clean(self, tag: str) -> None:
        # At once: nothing checked out, no open connection inside a transaction.
        assert self.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        pids = ",".join(str(p) for p in self.open_pids()) or "0"
        assert (
            await backends(
                self.admin,
                self.app,
                f"pid IN ({pids}) AND state LIKE 'idle in transaction%'",
            )
            == 0
        )

        # Connections that were closed by force: their server sessions end as
        # soon as the server notices (a statement still running, such as
        # pg_sleep, runs to its end first); none is left idle in a transaction.
        async def settled() -> bool:
            idle = await backends(
                self.admin, self.app, "state LIKE 'idle in transaction%'"
            )
            return idle == 0

        await until(settled, "no session of the test left idle in a transaction")
        async with self.admin.connect() as conn:
            result = await conn.exec_driver_sql(
                "SELECT count(*) FROM cancel_rows WHERE tag = $1", (tag,)
            )
            assert result.scalar_one() == 0


@asynccontextmanager
async def _harness(url: URL) -> AsyncIterator[_Harness]:
    h = _Harness(url)
    try:
        yield h
    finally:
        await h.close()


async def _scenario(
    h: _Harness, api: str, where: str, mechanism: str, tag: str
) -> None:
    async def work(handle: Any) -> None:
        conn = await _conn(handle)
        if where == "statement":
            await conn.exec_driver_sql(
                "INSERT INTO cancel_rows (tag) VALUES ($1)", (tag,)
            )
            await conn.exec_driver_sql("SELECT pg_sleep(10)")
        else:
            await conn.exec_driver_sql(
                "INSERT INTO slow_commit (tag) VALUES ($1)", (tag,)
            )

    sql_like = "%pg_sleep%" if where == "statement" else "commit%"

    async def ready() -> bool:
        return await h.running(sql_like)

    await cancel_when(mechanism, lambda: _run_api(api, h.engine, work), ready)
    await h.assert_clean(tag)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("api", APIS)
def test_cancel_scope_exit_leaves_nothing_checked_out_or_open(
    schema: URL, backend: dict[str, Any], api: str, where: str
) -> None:
    async def main() -> None:
        async with _harness(schema) as h:
            await _scenario(h, api, where, "scope.cancel", f"{api}-{where}")

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_every_anyio_cancellation_mechanism(
    schema: URL, backend: dict[str, Any], mechanism: str
) -> None:
    async def main() -> None:
        async with _harness(schema) as h:
            for api in APIS:
                await _scenario(h, api, "statement", mechanism, f"{mechanism}-{api}")

    run(backend, main)


# -- the bound (sqlalchemy_crdb_async._cleanup) --------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_cleanup_runs_to_its_end_through_repeated_cancellation(
    backend: dict[str, Any],
) -> None:
    steps: list[int] = []
    forced: list[bool] = []

    async def cleanup() -> None:
        for i in range(50):  # 50 loop turns: anyio cancels again on each one
            await anyio.lowlevel.checkpoint()
            steps.append(i)

    async def main() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await _cleanup.run_cleanup(cleanup(), lambda: forced.append(True), "t")
        assert scope.cancelled_caught

    run(backend, main)
    assert steps == list(range(50))
    assert forced == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_cleanup_past_the_bound_is_forced_with_a_warning(
    backend: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_cleanup, "CLEANUP_TIMEOUT_S", 0.05)
    forced: list[bool] = []
    reached_end = False

    async def cleanup() -> None:
        nonlocal reached_end
        await anyio.Event().wait()  # never set: a server that does not answer
        reached_end = True

    async def main() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await _cleanup.run_cleanup(
                cleanup(), lambda: forced.append(True), "stuck cleanup"
            )
        assert scope.cancelled_caught

    with caplog.at_level(logging.WARNING, logger="sqlalchemy_crdb_async.cleanup"):
        run(backend, main)
    assert forced == [True]
    assert not reached_end
    assert any(
        r.levelno == logging.WARNING and "stuck cleanup did not finish" in r.message
        for r in caplog.records
    )


def test_a_failed_cleanup_is_logged_and_forced_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forced: list[bool] = []

    async def cleanup() -> None:
        raise ConnectionResetError("gone")

    async def main() -> bool:
        return await _cleanup.run_cleanup(
            cleanup(), lambda: forced.append(True), "rollback"
        )

    with caplog.at_level(logging.WARNING, logger="sqlalchemy_crdb_async.cleanup"):
        assert anyio.run(main) is False
    assert forced == [True]
    assert any("rollback failed" in r.message for r in caplog.records)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rollback_the_server_does_not_answer_is_terminated(
    schema: URL,
    backend: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real connection whose cleanup hangs (the server is busy) is terminated."""
    monkeypatch.setattr(_cleanup, "CLEANUP_TIMEOUT_S", 0.2)

    async def main() -> None:
        h = _Harness(schema)
        try:
            async with h.engine.connect() as conn:
                await conn.begin()
                fairy = await conn.get_raw_connection()
                driver = fairy.driver_connection
                assert driver is not None
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    # stands in for a ROLLBACK that never gets an answer
                    await _cleanup.run_cleanup(
                        driver.execute("SELECT pg_sleep(10)"),
                        _cleanup.terminator(conn),
                        "hung rollback",
                    )
                assert scope.cancelled_caught
                assert driver.is_closed()
        finally:
            await h.close()

    with caplog.at_level(logging.WARNING, logger="sqlalchemy_crdb_async.cleanup"):
        run(backend, main)
    assert any("hung rollback did not finish" in r.message for r in caplog.records)
