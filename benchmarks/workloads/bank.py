"""Contended bank transfers at SERIALIZABLE, retried on conflict.

One operation moves 1-10 units between two random accounts in one
SERIALIZABLE transaction that reads both balances and writes both back
(read-modify-write: under a weaker isolation a lost update would show), and
retries on 40001 (serialization failure) and 40P01 (deadlock). Two banks:
``bank`` (100 accounts) and ``bank_hot`` (10 accounts: every transfer fights
over the same rows). The retry machinery is what differs between the
scenarios:

- raw asyncpg with a plain ``for attempt in range(...)`` loop (the reference);
- SQLAlchemy's stock dialect with a tenacity ``AsyncRetrying`` loop, the
  pattern applications write today;
- this package's ``run_transaction`` and ``retrying()`` on the engine (Core,
  the body re-runs per attempt), with the contention-adaptive admission gate
  (the default) and without it (``RetryPolicy(admission=False)``);
- ``run_transaction`` on an ``async_sessionmaker`` (the body gets a session);
- ``run_transaction`` with the default ``RetryPolicy()`` (its own backoff and
  bounds: does it give up?);
- a bare ``async with retrying_session(...)`` (the body runs once; its
  statements are replayed on conflict; lock-on-read on, the default, and
  off). Nothing re-runs the body: a ``ReplayMismatchError`` reaches the
  caller and is counted as an error (the ``errors`` in the SQLSTATEs column).

Every loop sleeps a jittered, capped exponential backoff (1 ms doubling, at
most 100 ms) after the transaction is rolled back, and allows 100 attempts.
After every cell the total balance must still be the number of accounts x
1,000: if money was lost or made, the benchmark stops with
:class:`BenchmarkInvariantError` and a non-zero exit.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, MetaData, Table, select, update

from .._harness.apis import missing_api, ours_api
from . import BenchmarkInvariantError, Ctx, Workload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

ACCOUNTS = 100
HOT_ACCOUNTS = 10
START_BALANCE = 1_000
MAX_ATTEMPTS = 100
BACKOFF_BASE_S = 0.001
BACKOFF_CAP_S = 0.1
#: SQLSTATEs every scenario retries: serialization_failure, deadlock_detected.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})

metadata = MetaData()


def _table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("balance", BigInteger),
    )


class RetriesExhausted(RuntimeError):
    """A transfer still conflicted after MAX_ATTEMPTS attempts."""


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of an asyncpg error or a SQLAlchemy DBAPIError wrapping one."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(code) if code else None


def _backoff_s(ctx: Ctx, attempt: int) -> float:
    return ctx.rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def _new_balances(rows: Any, src: int, dst: int, amount: int) -> tuple[int, int] | None:
    balance = {int(r[0]): int(r[1]) for r in rows}
    if balance[src] < amount:
        return None
    return balance[src] - amount, balance[dst] + amount


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


async def _serializable(ctx: Ctx) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    engine = ctx.engine.execution_options(isolation_level="SERIALIZABLE")
    ctx.extra["engine"] = engine
    ctx.extra["sessionmaker"] = async_sessionmaker(engine, expire_on_commit=False)


async def _sa_body(
    conn: AsyncConnection | AsyncSession,
    accounts: Table,
    src: int,
    dst: int,
    amount: int,
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


def _retry_api_reason() -> str | None:
    return missing_api(
        ("ReplayMismatchError", "RetryPolicy", "retrying_session", "run_transaction"),
        "the retry helpers are",
    )


def _prepare_ours(admission: bool) -> Callable[[Ctx], Awaitable[None]]:
    async def prepare(ctx: Ctx) -> None:
        await _serializable(ctx)

        def on_retry(event: Any) -> None:
            ctx.record_retry(getattr(event, "sqlstate", None))

        kwargs: dict[str, Any] = {"admission": admission} if not admission else {}
        ctx.extra["policy"] = ours_api("RetryPolicy")(
            max_attempts=MAX_ATTEMPTS,
            initial_backoff_s=BACKOFF_BASE_S,
            max_backoff_s=BACKOFF_CAP_S,
            on_retry=on_retry,
            **kwargs,
        )

    return prepare


def bank(name: str, n_accounts: int, doc: str) -> Workload:
    """A bank of ``n_accounts`` accounts with every scenario registered."""
    total = n_accounts * START_BALANCE
    table = f"bench_{name}_accounts"  # one table per bank: set up once per run
    accounts = _table(table)
    read_sql = f"SELECT id, balance FROM {table} WHERE id = $1 OR id = $2"
    write_sql = f"UPDATE {table} SET balance = $2 WHERE id = $1"

    async def setup(conn: asyncpg.Connection) -> None:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(
            f"CREATE TABLE {table} (id INT8 PRIMARY KEY, "
            "balance INT8 NOT NULL CHECK (balance >= 0))"
        )
        await conn.execute(
            f"INSERT INTO {table} (id, balance) SELECT i, "
            f"{START_BALANCE} FROM generate_series(1, {n_accounts}) AS i"
        )

    async def check(conn: asyncpg.Connection) -> None:
        got, count = await conn.fetchrow(
            f"SELECT sum(balance)::INT8, count(*) FROM {table}"
        )
        if (got, count) != (total, n_accounts):
            raise BenchmarkInvariantError(
                f"the bank is off: {count} accounts hold {got}, expected "
                f"{n_accounts} accounts holding {total}"
            )

    w = Workload(name, doc, setup=setup, check=check, retries=True)

    def pick(ctx: Ctx) -> tuple[int, int, int]:
        src, dst = ctx.rng.sample(range(1, n_accounts + 1), 2)
        return src, dst, ctx.rng.randint(1, 10)

    @w.scenario("asyncpg", "retry loop", reference=True)
    async def asyncpg_loop(ctx: Ctx) -> None:
        """asyncpg + a plain retry loop"""
        src, dst, amount = pick(ctx)

        async def body(conn: Any) -> None:
            rows = await conn.fetch(read_sql, src, dst)
            new = _new_balances(rows, src, dst, amount)
            if new is not None:
                await conn.execute(write_sql, src, new[0])
                await conn.execute(write_sql, dst, new[1])

        await asyncpg_retry_loop(ctx, src, dst, body)

    @w.scenario("sqlalchemy", "tenacity", prepare=_serializable)
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

        src, dst, amount = pick(ctx)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda e: sqlstate_of(e) in RETRYABLE_SQLSTATES),
            stop=stop_after_attempt(MAX_ATTEMPTS),
            wait=wait_random_exponential(multiplier=BACKOFF_BASE_S, max=BACKOFF_CAP_S),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                async with ctx.extra["engine"].begin() as conn:
                    await _sa_body(conn, accounts, src, dst, amount)

    for admission, suffix in ((True, ""), (False, " no-admission")):
        prepare = _prepare_ours(admission)

        @w.scenario(
            "ours",
            "run_transaction" + suffix,
            requires=_retry_api_reason,
            prepare=prepare,
        )
        async def ours_run_transaction(ctx: Ctx) -> None:
            """run_transaction(engine, fn): Core, the body re-runs per attempt"""
            src, dst, amount = pick(ctx)
            await ours_api("run_transaction")(
                ctx.extra["engine"],
                lambda conn: _sa_body(conn, accounts, src, dst, amount),
                policy=ctx.extra["policy"],
            )

        @w.scenario(
            "ours", "retrying" + suffix, requires=_retry_api_reason, prepare=prepare
        )
        async def ours_retrying(ctx: Ctx) -> None:
            """async for attempt in retrying(engine): Core"""
            src, dst, amount = pick(ctx)
            async for attempt in ours_api("retrying")(
                ctx.extra["engine"], policy=ctx.extra["policy"]
            ):
                async with attempt as conn:
                    await _sa_body(conn, accounts, src, dst, amount)

    @w.scenario(
        "ours",
        "run_transaction session",
        requires=_retry_api_reason,
        prepare=_prepare_ours(True),
    )
    async def ours_run_transaction_session(ctx: Ctx) -> None:
        """run_transaction(sessionmaker, fn): the body gets an AsyncSession"""
        src, dst, amount = pick(ctx)

        async def transfer(session: AsyncSession) -> None:
            await _sa_body(session, accounts, src, dst, amount)

        await ours_api("run_transaction")(
            ctx.extra["sessionmaker"], transfer, policy=ctx.extra["policy"]
        )

    for lock, suffix in ((True, ""), (False, " no-lock")):

        @w.scenario(
            "ours",
            "retrying_session" + suffix,
            requires=_retry_api_reason,
            prepare=_prepare_ours(True),
        )
        async def ours_retrying_session(ctx: Ctx, lock: bool = lock) -> None:
            """bare async with retrying_session(): errors reach the caller"""
            src, dst, amount = pick(ctx)
            async with ours_api("retrying_session")(
                ctx.extra["sessionmaker"], policy=ctx.extra["policy"], lock_on_read=lock
            ) as session:
                await _sa_body(session, accounts, src, dst, amount)

    @w.scenario(
        "ours",
        "run_transaction defaults",
        requires=_retry_api_reason,
        prepare=_prepare_defaults,
    )
    async def ours_run_transaction_defaults(ctx: Ctx) -> None:
        """run_transaction(engine, fn) with RetryPolicy() as it comes"""
        src, dst, amount = pick(ctx)
        await ours_api("run_transaction")(
            ctx.extra["engine"],
            lambda conn: _sa_body(conn, accounts, src, dst, amount),
            policy=ctx.extra["policy"],
        )

    return w


async def _prepare_defaults(ctx: Ctx) -> None:
    # the default policy (deadline 30 s, 100 attempts, 20 ms..1 s backoff);
    # only the retry counter is added
    await _serializable(ctx)

    def on_retry(event: Any) -> None:
        ctx.record_retry(getattr(event, "sqlstate", None))

    ctx.extra["policy"] = ours_api("RetryPolicy")(on_retry=on_retry)


workload = bank("bank", ACCOUNTS, __doc__)
hot_workload = bank(
    "bank_hot",
    HOT_ACCOUNTS,
    "Contended bank transfers on hot rows: 10 accounts, retried on conflict.\n\n"
    "The bank workload (see ``bank``) with 10 accounts instead of 100.",
)
