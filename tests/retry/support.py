"""What the retry tests share (tests/retry/, tests/reliability/): once, here.

- Real server-side failures: PL/pgSQL functions and deferred constraint
  triggers raise SQLSTATE 40001 a set number of times, counted by a sequence
  (sequences are not transactional, so the count survives the rollback that a
  retry performs).
- ``FAST``, a policy with millisecond backoffs; ``conn_of()``, the connection
  under an AsyncConnection or AsyncSession; ``until()``, a bounded poll, and
  ``HANG_S``, a hang guard (never a timing assertion).
- ``TARGETS``: a factory per kind of target the async helpers accept (the
  ``target`` fixture's parameters).
- ``HELPERS``: one function per way of running work under a retry helper
  (``run_transaction`` on an engine or a sessionmaker, ``retrying``,
  ``retrying_session``), to parametrize a test over them.

The fixtures built on these (``db``, ``target``) are in tests/retry/conftest.py.
"""

from __future__ import annotations

import asyncio
import itertools
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sqlalchemy_crdb_async import (
    RetryPolicy,
    retrying,
    retrying_session,
    run_transaction,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    Work = Callable[[Any], Awaitable[None]]
    #: One of HELPERS: ``await api(db, work, policy, idempotent=...)``.
    Runner = Callable[..., Awaitable[None]]

#: Millisecond backoffs: the retry tests wait for nothing.
FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01)
#: A hang guard for waits that never end when the code under test is wrong;
#: not a timing assertion.
HANG_S = 60

SETUP = [
    # fail_times(n, seq): raise 40001 on the first n calls counted by seq.
    """
    CREATE OR REPLACE FUNCTION fail_times(n int, seq text) RETURNS int
    LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval(seq::regclass) <= n THEN
        RAISE EXCEPTION 'forced by fail_times' USING ERRCODE = 'serialization_failure';
      END IF;
      RETURN 1;
    END $$
    """,
    # Rows inserted into commit_probe make COMMIT fail with 40001 `failures` times.
    """
    CREATE TABLE IF NOT EXISTS commit_probe (
      id serial PRIMARY KEY, seq text NOT NULL, failures int NOT NULL, note text
    )
    """,
    """
    CREATE OR REPLACE FUNCTION commit_probe_check() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval(NEW.seq::regclass) <= NEW.failures THEN
        RAISE EXCEPTION 'forced at COMMIT' USING ERRCODE = 'serialization_failure';
      END IF;
      RETURN NULL;
    END $$
    """,
    "DROP TRIGGER IF EXISTS commit_probe_deferred ON commit_probe",
    """
    CREATE CONSTRAINT TRIGGER commit_probe_deferred AFTER INSERT ON commit_probe
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION commit_probe_check()
    """,
    "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v int NOT NULL)",
]

_names = itertools.count()


async def install(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for statement in SETUP:
            await conn.exec_driver_sql(statement)


async def new_counter(engine: AsyncEngine) -> str:
    """A fresh sequence name for fail_times() / commit_probe."""
    name = f"retry_counter_{next(_names)}"
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"CREATE SEQUENCE {name}")
    return name


async def fail_times(conn: AsyncConnection, n: int, seq: str) -> None:
    await conn.exec_driver_sql(f"SELECT fail_times({n}, '{seq}')")


async def count_rows(engine: AsyncEngine, table: str, where: str = "true") -> int:
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(
            f"SELECT count(*) FROM {table} WHERE {where}"
        )
        return int(result.scalar_one())


async def until(ready: Callable[[], bool], what: str) -> None:
    """Yield to the loop until ``ready()`` (bounded: 5,000 turns of 1 ms at
    least); fail saying ``what`` never happened."""
    for _ in range(5_000):
        if ready():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


async def conn_of(handle: AsyncConnection | AsyncSession) -> AsyncConnection:
    """The AsyncConnection of an attempt's handle (a connection or a session)."""
    return await handle.connection() if isinstance(handle, AsyncSession) else handle


# -- one function per retry helper, to parametrize over ---------------------


async def via_run_transaction(
    db: AsyncEngine, work: Work, policy: RetryPolicy = FAST, *, idempotent: bool = False
) -> None:
    await run_transaction(db, work, policy=policy, idempotent=idempotent)


async def via_run_transaction_session(
    db: AsyncEngine, work: Work, policy: RetryPolicy = FAST, *, idempotent: bool = False
) -> None:
    maker = async_sessionmaker(db)
    await run_transaction(maker, work, policy=policy, idempotent=idempotent)


async def via_retrying(
    db: AsyncEngine, work: Work, policy: RetryPolicy = FAST, *, idempotent: bool = False
) -> None:
    async for attempt in retrying(db, policy=policy, idempotent=idempotent):
        async with attempt as handle:
            await work(handle)


async def via_retrying_session(
    db: AsyncEngine, work: Work, policy: RetryPolicy = FAST, *, idempotent: bool = False
) -> None:
    async with retrying_session(db, policy=policy, idempotent=idempotent) as session:
        await work(session)


#: The helpers that re-run the work (``pytest.mark.parametrize("api", HELPERS)``).
HELPERS = [
    pytest.param(via_run_transaction, id="run_transaction"),
    pytest.param(via_retrying, id="retrying"),
    pytest.param(via_run_transaction_session, id="run_transaction_session"),
]
#: Those plus retrying_session, which runs the work once and replays it.
ALL_HELPERS = [*HELPERS, pytest.param(via_retrying_session, id="retrying_session")]


# -- the four kinds of target, for the ``target`` fixture -------------------


@asynccontextmanager
async def engine_target(db: AsyncEngine) -> AsyncIterator[Any]:
    yield db


@asynccontextmanager
async def connection_target(db: AsyncEngine) -> AsyncIterator[Any]:
    async with db.connect() as conn:
        yield conn


@asynccontextmanager
async def sessionmaker_target(db: AsyncEngine) -> AsyncIterator[Any]:
    yield async_sessionmaker(db)


@asynccontextmanager
async def session_target(db: AsyncEngine) -> AsyncIterator[Any]:
    async with AsyncSession(db) as session:
        yield session


TARGETS = [
    pytest.param(engine_target, id="engine"),
    pytest.param(connection_target, id="connection"),
    pytest.param(sessionmaker_target, id="sessionmaker"),
    pytest.param(session_target, id="session"),
]
