"""The contended bank: 100 accounts, 64 concurrent tasks, SERIALIZABLE.

At least 2,000 transfers through each retry API; no error may reach the caller
and the total balance must be conserved. Throughput numbers belong to the
bank workloads of the benchmarks (``python -m benchmarks --workload bank``),
not here.

The transfers are Core statements (through a connection or a session) to keep
the run short; the ORM path is covered by test_retry_replay.py and the
benchmark. At this contention PostgreSQL's SSI aborts about one attempt per
commit; the policy here allows 40 attempts. The default policy (a 30 s
deadline first, 100 attempts second) on 10 hot rows is tested in
test_admission.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Integer, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlalchemy_crdb_async import (
    RetryPolicy,
    retry_stats,
    retrying,
    retrying_session,
    run_transaction,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

ACCOUNTS = 100
TASKS = 64
TRANSFERS_PER_TASK = 32  # 2,048 transfers in all
START_BALANCE = 1_000
POLICY = RetryPolicy(max_attempts=40)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "bank_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    balance: Mapped[int] = mapped_column(Integer)


@pytest.fixture
async def bank(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(
        crdb_url, pool_size=TASKS, max_overflow=0, isolation_level="SERIALIZABLE"
    )
    async with eng.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(
            Account.__table__.insert(),
            [{"id": i, "balance": START_BALANCE} for i in range(ACCOUNTS)],
        )
    try:
        yield eng
    finally:
        await eng.dispose()


def _pair(rng: random.Random) -> tuple[int, int, int]:
    a, b = rng.sample(range(ACCOUNTS), 2)
    return a, b, rng.randint(1, 50)


SELECT = text("SELECT balance FROM bank_accounts WHERE id = :id")
UPDATE = text("UPDATE bank_accounts SET balance = :bal WHERE id = :id")


async def transfer_(
    handle: AsyncConnection | AsyncSession, a: int, b: int, amount: int
) -> None:
    balance = {
        a: (await handle.execute(SELECT, {"id": a})).scalar_one() - amount,
        b: (await handle.execute(SELECT, {"id": b})).scalar_one() + amount,
    }
    for key in sorted(balance):  # in key order: no deadlocks, only conflicts
        await handle.execute(UPDATE, {"id": key, "bal": balance[key]})


async def via_run_transaction(engine: AsyncEngine, rng: random.Random) -> None:
    a, b, amount = _pair(rng)
    await run_transaction(engine, lambda c: transfer_(c, a, b, amount), policy=POLICY)


async def via_retrying(engine: AsyncEngine, rng: random.Random) -> None:
    a, b, amount = _pair(rng)
    async for attempt in retrying(async_sessionmaker(engine), policy=POLICY):
        async with attempt as session:
            await transfer_(session, a, b, amount)


async def via_retrying_session(engine: AsyncEngine, rng: random.Random) -> None:
    a, b, amount = _pair(rng)

    # A replay mismatch (someone changed a balance we read) re-runs the body.
    # The outer target is a sessionmaker: its unused session holds no connection.
    async def body(_: object) -> None:
        async with retrying_session(engine, policy=POLICY) as session:
            await transfer_(session, a, b, amount)

    await run_transaction(async_sessionmaker(engine), body, policy=POLICY)


API = Callable[[AsyncEngine, random.Random], Awaitable[None]]


@pytest.mark.parametrize(
    "transfer",
    [via_run_transaction, via_retrying, via_retrying_session],
    ids=["run_transaction", "retrying", "retrying_session"],
)
async def test_contended_bank_conserves_money_with_no_errors(
    bank: AsyncEngine, transfer: API
) -> None:
    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(TRANSFERS_PER_TASK):
            await transfer(bank, rng)

    before = retry_stats(bank)
    results = await asyncio.gather(
        *(worker(seed) for seed in range(TASKS)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    after = retry_stats(bank)
    async with bank.connect() as conn:
        total = (
            await conn.exec_driver_sql("SELECT sum(balance) FROM bank_accounts")
        ).scalar_one()
    assert total == ACCOUNTS * START_BALANCE
    # (retrying_session counts its own commit and run_transaction's)
    commits = after.commits - before.commits
    assert commits >= TASKS * TRANSFERS_PER_TASK >= 2_000
    assert after.give_ups == before.give_ups
    # the workload really is contended: conflicts happened and were retried
    assert after.retries - before.retries > 0
