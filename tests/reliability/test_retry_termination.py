"""Retries across lost connections and cancellation, against the real server.

A backend is terminated with ``pg_terminate_backend`` mid-transaction (retried on
a new connection) and during COMMIT (a deferred trigger terminates its own
backend: AmbiguousCommitError, or a retry with ``idempotent=True``). Cancelling a
task during a statement or a backoff sleep leaves no checked-out connection and
no open transaction.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from sqlalchemy_crdb_async import (
    AmbiguousCommitError,
    RetryEvent,
    RetryPolicy,
    retry_stats,
    retrying_session,
    run_transaction,
)
from tests.retry.support import ALL_HELPERS, FAST, HELPERS, conn_of, new_counter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from sqlalchemy.engine import URL

    from tests.retry.support import Runner

SETUP = [
    "CREATE TABLE IF NOT EXISTS rows (id serial PRIMARY KEY, tag text)",
    "CREATE TABLE IF NOT EXISTS kill_probe"
    " (id serial PRIMARY KEY, seq text, kills int)",
    # Terminates its own backend at COMMIT the first `kills` times.
    """
    CREATE OR REPLACE FUNCTION kill_probe_check() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval(NEW.seq::regclass) <= NEW.kills THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(5);
      END IF;
      RETURN NULL;
    END $$
    """,
    "DROP TRIGGER IF EXISTS kill_probe_deferred ON kill_probe",
    """
    CREATE CONSTRAINT TRIGGER kill_probe_deferred AFTER INSERT ON kill_probe
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kill_probe_check()
    """,
]


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        for statement in SETUP:
            await conn.exec_driver_sql(statement)
    return engine


@pytest.fixture
async def admin(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(crdb_url, poolclass=NullPool)
    try:
        yield eng
    finally:
        await eng.dispose()


async def _scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.exec_driver_sql(sql)).scalar_one()


@pytest.mark.parametrize("api", HELPERS)
async def test_backend_terminated_mid_transaction_is_retried_on_a_new_connection(
    db: AsyncEngine, admin: AsyncEngine, api: Runner
) -> None:
    tag = f"mid-{api.__name__}"
    pids: list[int] = []

    async def work(handle: Any) -> None:
        conn = await conn_of(handle)
        pid = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
        pids.append(pid)
        await conn.execute(text("INSERT INTO rows (tag) VALUES (:t)"), {"t": tag})
        if len(pids) == 1:
            # wait (up to 5 s) until the backend is really gone
            assert await _scalar(admin, f"SELECT pg_terminate_backend({pid}, 5000)")
        await conn.exec_driver_sql("SELECT 1")

    before = retry_stats(db)
    await api(db, work)
    assert len(pids) == 2
    assert pids[0] != pids[1]
    assert await _scalar(db, f"SELECT count(*) FROM rows WHERE tag = '{tag}'") == 1
    assert retry_stats(db).retries - before.retries == 1


async def test_retrying_session_surfaces_connection_loss_for_an_outer_retry(
    db: AsyncEngine, admin: AsyncEngine
) -> None:
    runs = 0

    async def body(_: object) -> None:
        nonlocal runs
        runs += 1
        async with retrying_session(db, policy=FAST) as session:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await session.execute(text("INSERT INTO rows (tag) VALUES ('rs-mid')"))
            if runs == 1:
                assert await _scalar(admin, f"SELECT pg_terminate_backend({pid}, 5000)")
            await session.execute(text("SELECT 1"))

    await run_transaction(db, body, policy=FAST)
    assert runs == 2
    assert await _scalar(db, "SELECT count(*) FROM rows WHERE tag = 'rs-mid'") == 1


def _kill_at_commit(seq: str, kills: int) -> Callable[[Any], Awaitable[None]]:
    async def work(handle: Any) -> None:
        conn = await conn_of(handle)
        await conn.exec_driver_sql(
            f"INSERT INTO kill_probe (seq, kills) VALUES ('{seq}', {kills})"
        )

    return work


@pytest.mark.parametrize("api", HELPERS)
async def test_backend_terminated_during_commit_is_ambiguous(
    db: AsyncEngine, api: Runner
) -> None:
    seq = await new_counter(db)
    before = retry_stats(db)
    with pytest.raises(AmbiguousCommitError) as info:
        await api(db, _kill_at_commit(seq, 1))
    assert info.value.__cause__ is not None
    assert retry_stats(db).ambiguous - before.ambiguous == 1
    # the backend died before its commit record: nothing was committed
    assert (
        await _scalar(db, f"SELECT count(*) FROM kill_probe WHERE seq = '{seq}'") == 0
    )


@pytest.mark.parametrize("api", HELPERS)
async def test_backend_terminated_during_commit_is_retried_when_idempotent(
    db: AsyncEngine, api: Runner
) -> None:
    seq = await new_counter(db)
    await api(db, _kill_at_commit(seq, 1), idempotent=True)
    assert (
        await _scalar(db, f"SELECT count(*) FROM kill_probe WHERE seq = '{seq}'") == 1
    )


async def test_retrying_session_commit_termination_is_ambiguous(
    db: AsyncEngine,
) -> None:
    seq = await new_counter(db)
    with pytest.raises(AmbiguousCommitError):
        async with retrying_session(db, policy=FAST) as session:
            await _kill_at_commit(seq, 1)(session)


async def test_retrying_session_commit_termination_idempotent_outer_retry(
    db: AsyncEngine,
) -> None:
    seq = await new_counter(db)
    runs = 0

    async def body(_: object) -> None:
        nonlocal runs
        runs += 1
        async with retrying_session(db, policy=FAST, idempotent=True) as session:
            await _kill_at_commit(seq, 1)(session)

    await run_transaction(db, body, policy=FAST, idempotent=True)
    assert runs == 2
    assert (
        await _scalar(db, f"SELECT count(*) FROM kill_probe WHERE seq = '{seq}'") == 1
    )


# -- cancellation ------------------------------------------------------------


async def _settled(db: AsyncEngine, admin: AsyncEngine) -> tuple[int, int]:
    """Pool checkouts and idle-in-transaction backends, once cleanup has run."""
    for _ in range(100):
        checked_out = db.pool.checkedout()  # type: ignore[attr-defined]
        idle_in_txn = await _scalar(
            admin,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'",
        )
        if checked_out == 0 and idle_in_txn == 0:
            break
        await asyncio.sleep(0.05)
    return checked_out, idle_in_txn


@pytest.mark.parametrize("api", ALL_HELPERS)
async def test_cancel_during_a_statement_leaves_nothing_open(
    db: AsyncEngine, admin: AsyncEngine, api: Runner
) -> None:
    started = asyncio.Event()

    async def work(handle: Any) -> None:
        conn = await conn_of(handle)
        await conn.exec_driver_sql("INSERT INTO rows (tag) VALUES ('cancel-stmt')")
        started.set()
        await conn.exec_driver_sql("SELECT pg_sleep(30)")

    task = asyncio.ensure_future(api(db, work, FAST))
    await started.wait()
    await asyncio.sleep(0.1)  # let pg_sleep start
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _settled(db, admin) == (0, 0)
    assert await _scalar(db, "SELECT count(*) FROM rows WHERE tag = 'cancel-stmt'") == 0


@pytest.mark.parametrize("api", ALL_HELPERS)
async def test_cancel_during_backoff_sleep_leaves_nothing_open(
    db: AsyncEngine, admin: AsyncEngine, api: Runner
) -> None:
    sleeping = asyncio.Event()

    def on_retry(event: RetryEvent) -> None:
        sleeping.set()

    policy = RetryPolicy(  # no deadline: a 60 s sleep would pass the default 30 s
        initial_backoff_s=60,
        max_backoff_s=60,
        jitter="none",
        on_retry=on_retry,
        deadline_s=None,
    )

    async def work(handle: Any) -> None:
        conn = await conn_of(handle)
        await conn.exec_driver_sql("INSERT INTO rows (tag) VALUES ('cancel-sleep')")
        await conn.exec_driver_sql(
            "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'serialization_failure'; "
            "END $$"
        )

    task = asyncio.ensure_future(api(db, work, policy))
    await sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _settled(db, admin) == (0, 0)
    assert (
        await _scalar(db, "SELECT count(*) FROM rows WHERE tag = 'cancel-sleep'") == 0
    )
