"""Contended bank transfers at SERIALIZABLE: 100 accounts, retried on conflict.

One operation moves 1-10 units between two random accounts out of 100 in one
SERIALIZABLE transaction that reads both balances and writes both back
(read-modify-write: under a weaker isolation a lost update would show), and
retries the whole transaction on 40001 (serialization failure) and 40P01
(deadlock). The retry machinery is what differs between the scenarios:

- raw asyncpg with a plain ``for attempt in range(...)`` loop (the reference);
- SQLAlchemy's stock dialect with a tenacity ``AsyncRetrying`` loop, the
  pattern applications write today;
- this package's ``run_transaction`` (the body re-runs per attempt) and
  ``retrying_session`` (the body runs once; statements are replayed; when a
  replay reads different balances, ``ReplayMismatchError`` asks for the body
  to run again, which a plain loop around it does, counted as
  ``replay-mismatch`` in the SQLSTATE breakdown).

The loops sleep a jittered, capped exponential backoff (1 ms doubling, at most
100 ms) after the transaction is rolled back. After every cell the total
balance must still be 100 x 1,000: if money was lost or made, the benchmark
stops with :class:`BenchmarkInvariantError` and a non-zero exit.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, MetaData, Table, select, update

from .._harness.variants import missing_api, ours_api
from . import BenchmarkInvariantError, Ctx, Workload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

ACCOUNTS = 100
START_BALANCE = 1_000
TOTAL = ACCOUNTS * START_BALANCE
MAX_ATTEMPTS = 100
BACKOFF_BASE_S = 0.001
BACKOFF_CAP_S = 0.1
#: SQLSTATEs every scenario retries: serialization_failure, deadlock_detected.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
#: How a re-run after ReplayMismatchError shows in the SQLSTATE breakdown.
REPLAY_MISMATCH = "replay-mismatch"

READ_SQL = "SELECT id, balance FROM bench_accounts WHERE id = $1 OR id = $2"
WRITE_SQL = "UPDATE bench_accounts SET balance = $2 WHERE id = $1"

metadata = MetaData()
accounts = Table(
    "bench_accounts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("balance", BigInteger),
)


class RetriesExhausted(RuntimeError):
    """A transfer still conflicted after MAX_ATTEMPTS attempts."""


async def _setup(conn: asyncpg.Connection) -> None:
    await conn.execute("DROP TABLE IF EXISTS bench_accounts")
    await conn.execute(
        "CREATE TABLE bench_accounts (id INT8 PRIMARY KEY, "
        "balance INT8 NOT NULL CHECK (balance >= 0))"
    )
    await conn.execute(
        "INSERT INTO bench_accounts (id, balance) SELECT i, "
        f"{START_BALANCE} FROM generate_series(1, {ACCOUNTS}) AS i"
    )


async def _check(conn: asyncpg.Connection) -> None:
    total, count = await conn.fetchrow(
        "SELECT sum(balance)::INT8, count(*) FROM bench_accounts"
    )
    if (total, count) != (TOTAL, ACCOUNTS):
        raise BenchmarkInvariantError(
            f"the bank is off: {count} accounts hold {total}, expected "
            f"{ACCOUNTS} accounts holding {TOTAL}"
        )


workload = Workload("bank", __doc__, setup=_setup, check=_check, retries=True)


def _pick(ctx: Ctx) -> tuple[int, int, int]:
    src, dst = ctx.rng.sample(range(1, ACCOUNTS + 1), 2)
    return src, dst, ctx.rng.randint(1, 10)


def _backoff_s(ctx: Ctx, attempt: int) -> float:
    return ctx.rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def _new_balances(rows: Any, src: int, dst: int, amount: int) -> tuple[int, int] | None:
    balance = {int(r[0]): int(r[1]) for r in rows}
    if balance[src] < amount:
        return None
    return balance[src] - amount, balance[dst] + amount


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of an asyncpg error or a SQLAlchemy DBAPIError wrapping one."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(code) if code else None


# -- raw asyncpg, plain loop ------------------------------------------------


async def asyncpg_retry_loop(
    ctx: Ctx, src: object, dst: object, body: Callable[[Any], Awaitable[None]]
) -> None:
    """The plain retry loop on raw asyncpg: ``body(conn)`` in a SERIALIZABLE
    transaction, re-run with backoff on a retryable SQLSTATE."""
    import asyncpg

    for attempt in range(MAX_ATTEMPTS):
        try:
            async with (
                ctx.pool.acquire() as conn,
                conn.transaction(isolation="serializable"),
            ):
                await body(conn)
            return
        except asyncpg.PostgresError as e:
            if e.sqlstate not in RETRYABLE_SQLSTATES:
                raise
            ctx.record_retry(e.sqlstate)
        await asyncio.sleep(_backoff_s(ctx, attempt))
    raise RetriesExhausted(f"transfer {src}->{dst} gave up after {MAX_ATTEMPTS}")


@workload.scenario("asyncpg", "retry loop", reference=True)
async def asyncpg_loop(ctx: Ctx) -> None:
    """asyncpg + a plain retry loop"""
    src, dst, amount = _pick(ctx)

    async def body(conn: Any) -> None:
        rows = await conn.fetch(READ_SQL, src, dst)
        new = _new_balances(rows, src, dst, amount)
        if new is not None:
            await conn.execute(WRITE_SQL, src, new[0])
            await conn.execute(WRITE_SQL, dst, new[1])

    await asyncpg_retry_loop(ctx, src, dst, body)


# -- SQLAlchemy + tenacity ----------------------------------------------------


async def _serializable(ctx: Ctx) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    engine = ctx.engine.execution_options(isolation_level="SERIALIZABLE")
    ctx.extra["engine"] = engine
    ctx.extra["sessionmaker"] = async_sessionmaker(engine, expire_on_commit=False)


async def _sa_body(
    conn: AsyncConnection | AsyncSession, src: int, dst: int, amount: int
) -> None:
    result = await conn.execute(
        select(accounts.c.id, accounts.c.balance).where(accounts.c.id.in_([src, dst]))
    )
    new = _new_balances(result.all(), src, dst, amount)
    if new is None:
        return
    stmt = update(accounts)
    await conn.execute(stmt.where(accounts.c.id == src).values(balance=new[0]))
    await conn.execute(stmt.where(accounts.c.id == dst).values(balance=new[1]))


@workload.scenario("sqlalchemy", "tenacity", prepare=_serializable)
async def sqlalchemy_tenacity(ctx: Ctx) -> None:
    """SQLAlchemy Core + tenacity AsyncRetrying"""
    from tenacity import (
        AsyncRetrying,
        RetryCallState,
        retry_if_exception,
        stop_after_attempt,
        wait_random_exponential,
    )

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        ctx.record_retry(sqlstate_of(exc) if exc else None)

    src, dst, amount = _pick(ctx)
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(lambda e: sqlstate_of(e) in RETRYABLE_SQLSTATES),
        stop=stop_after_attempt(MAX_ATTEMPTS),
        wait=wait_random_exponential(multiplier=BACKOFF_BASE_S, max=BACKOFF_CAP_S),
        before_sleep=before_sleep,
        reraise=True,
    ):
        with attempt:
            async with ctx.extra["engine"].begin() as conn:
                await _sa_body(conn, src, dst, amount)


# -- ours: run_transaction and retrying_session ------------------------------


def _retry_api_reason() -> str | None:
    return missing_api(
        ("ReplayMismatchError", "RetryPolicy", "retrying_session", "run_transaction"),
        "the retry helpers are",
    )


async def _prepare_ours(ctx: Ctx) -> None:
    await _serializable(ctx)

    def on_retry(event: Any) -> None:
        ctx.record_retry(getattr(event, "sqlstate", None))

    ctx.extra["policy"] = ours_api("RetryPolicy")(
        max_attempts=MAX_ATTEMPTS,
        initial_backoff_s=BACKOFF_BASE_S,
        max_backoff_s=BACKOFF_CAP_S,
        on_retry=on_retry,
    )


@workload.scenario(
    "ours", "run_transaction", requires=_retry_api_reason, prepare=_prepare_ours
)
async def ours_run_transaction(ctx: Ctx) -> None:
    """run_transaction(sessionmaker, fn): the body re-runs per attempt"""
    run_transaction = ours_api("run_transaction")
    src, dst, amount = _pick(ctx)

    async def transfer(session: AsyncSession) -> None:
        await _sa_body(session, src, dst, amount)

    await run_transaction(
        ctx.extra["sessionmaker"], transfer, policy=ctx.extra["policy"]
    )


@workload.scenario(
    "ours", "retrying_session", requires=_retry_api_reason, prepare=_prepare_ours
)
async def ours_retrying_session(ctx: Ctx) -> None:
    """retrying_session(sessionmaker): the body runs once, replayed on conflict"""
    retrying_session = ours_api("retrying_session")
    replay_mismatch = ours_api("ReplayMismatchError")

    src, dst, amount = _pick(ctx)
    # A replay whose reads differ (another transfer moved the money meanwhile)
    # raises ReplayMismatchError: the body must run again. The documented
    # outer run_transaction(engine, ...) would hold a second connection per
    # task, so a plain loop re-runs the body here; each counts as a retry.
    for attempt in range(MAX_ATTEMPTS):
        try:
            async with retrying_session(
                ctx.extra["sessionmaker"], policy=ctx.extra["policy"]
            ) as session:
                await _sa_body(session, src, dst, amount)
            return
        except replay_mismatch:
            ctx.record_retry(REPLAY_MISMATCH)
        await asyncio.sleep(_backoff_s(ctx, attempt))
    raise RetriesExhausted(f"transfer {src}->{dst} gave up after {MAX_ATTEMPTS}")
