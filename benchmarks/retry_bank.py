"""Contended bank transfers through each retry API, next to a plain retry loop.

Standalone (no package import needed)::

    python benchmarks/retry_bank.py                      # embedded PostgreSQL
    python benchmarks/retry_bank.py --url cockroachdb+asyncpg://root@host:26257/db
    python benchmarks/retry_bank.py --transfers 2048 --tasks 64 --accounts 100 --json

Every API moves the same number of transfers between ``--accounts`` accounts
from ``--tasks`` concurrent tasks at SERIALIZABLE, in the same process and run:

``plain_loop``           a hand-written loop: catch DBAPIError with SQLSTATE
                         40001/40P01, sleep with the same backoff, run again
``run_transaction``      :func:`sqlalchemy_crdb_async.run_transaction`, Core
``run_transaction_orm``  the same with an ``async_sessionmaker`` and the ORM
``retrying``             :func:`sqlalchemy_crdb_async.retrying`, Core
``retrying_session``     :func:`sqlalchemy_crdb_async.retrying_session` (ORM)
                         inside ``run_transaction`` (re-run on
                         ReplayMismatchError)

The plain loop, ``run_transaction`` and ``retrying`` run the same Core
statements, so their numbers compare directly; the ORM rows show the ORM's cost
on top. The machine's load moves these numbers a lot (a contended workload
aborts more when transactions run longer): compare rows of one run, and use
``--rounds`` to see the spread.

For each it reports committed transfers per second, retries per commit, and
checks that the total balance is conserved. The order of the APIs rotates
with ``--rounds`` so that no API always runs on a warm or a cold server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Integer, insert, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy_crdb_async as crdb


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "bench_bank_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    balance: Mapped[int] = mapped_column(Integer)


START = 1_000
SELECT = text("SELECT balance FROM bench_bank_accounts WHERE id = :id")
UPDATE = text("UPDATE bench_bank_accounts SET balance = :bal WHERE id = :id")


async def core_transfer(conn: AsyncConnection, a: int, b: int, amount: int) -> None:
    balance = {
        a: (await conn.execute(SELECT, {"id": a})).scalar_one() - amount,
        b: (await conn.execute(SELECT, {"id": b})).scalar_one() + amount,
    }
    for key in sorted(balance):  # key order: conflicts, but no deadlocks
        await conn.execute(UPDATE, {"id": key, "bal": balance[key]})


async def orm_transfer(session: AsyncSession, a: int, b: int, amount: int) -> None:
    src = await session.get(Account, a)
    dst = await session.get(Account, b)
    assert src is not None
    assert dst is not None
    # the unit of work flushes UPDATEs in primary-key order: no deadlocks
    src.balance -= amount
    dst.balance += amount


class PlainLoop:
    """What users write by hand today: the baseline."""

    def __init__(self, policy: crdb.RetryPolicy) -> None:
        self.policy = policy
        self.retries = 0
        self.commits = 0
        self.by_sqlstate: dict[str, int] = {}

    async def run(self, engine: AsyncEngine, a: int, b: int, amount: int) -> None:
        for attempt in range(1, 1_000):
            try:
                async with engine.begin() as conn:
                    await core_transfer(conn, a, b, amount)
            except sa_exc.DBAPIError as error:
                code = getattr(error.orig, "sqlstate", None)
                if code not in ("40001", "40P01"):
                    raise
                self.retries += 1
                self.by_sqlstate[code] = self.by_sqlstate.get(code, 0) + 1
                await asyncio.sleep(self.policy.backoff_s(attempt))
                continue
            self.commits += 1
            return
        raise RuntimeError("plain loop gave up")


Transfer = Callable[[AsyncEngine, int, int, int], Awaitable[None]]


def apis(policy: crdb.RetryPolicy, plain: PlainLoop) -> dict[str, Transfer]:
    async def run_transaction(engine: AsyncEngine, a: int, b: int, amount: int) -> None:
        await crdb.run_transaction(
            engine, lambda c: core_transfer(c, a, b, amount), policy=policy
        )

    async def run_transaction_orm(
        engine: AsyncEngine, a: int, b: int, amount: int
    ) -> None:
        maker = async_sessionmaker(engine)
        await crdb.run_transaction(
            maker, lambda s: orm_transfer(s, a, b, amount), policy=policy
        )

    async def retrying(engine: AsyncEngine, a: int, b: int, amount: int) -> None:
        async for attempt in crdb.retrying(engine, policy=policy):
            async with attempt as conn:
                await core_transfer(conn, a, b, amount)

    async def retrying_session(
        engine: AsyncEngine, a: int, b: int, amount: int
    ) -> None:
        async def body(_: object) -> None:
            async with crdb.retrying_session(engine, policy=policy) as session:
                await orm_transfer(session, a, b, amount)

        # a sessionmaker target: the outer session is never used, so it holds
        # no connection while the inner one works
        await crdb.run_transaction(async_sessionmaker(engine), body, policy=policy)

    return {
        "plain_loop": plain.run,
        "run_transaction": run_transaction,
        "run_transaction_orm": run_transaction_orm,
        "retrying": retrying,
        "retrying_session": retrying_session,
    }


async def reset(engine: AsyncEngine, accounts: int) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(
            insert(Account),
            [{"id": i, "balance": START} for i in range(accounts)],
        )


async def measure(
    engine: AsyncEngine,
    name: str,
    transfer: Transfer,
    args: argparse.Namespace,
    plain: PlainLoop,
) -> dict[str, Any]:
    await reset(engine, args.accounts)
    per_task = -(-args.transfers // args.tasks)
    crdb.retry_stats(engine, reset=True)
    plain.retries = plain.commits = 0
    plain.by_sqlstate = {}

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(per_task):
            a, b = rng.sample(range(args.accounts), 2)
            await transfer(engine, a, b, rng.randint(1, 50))

    started = time.perf_counter()
    results = await asyncio.gather(
        *(worker(s) for s in range(args.tasks)), return_exceptions=True
    )
    elapsed = time.perf_counter() - started
    errors = [r for r in results if isinstance(r, BaseException)]
    stats = crdb.retry_stats(engine)
    if name == "plain_loop":
        commits, retries = plain.commits, plain.retries
        by_sqlstate = dict(plain.by_sqlstate)
    else:
        # retrying_session: commits of the outer run_transaction and the inner
        # session are both counted; count transfers, not helper commits.
        commits = per_task * args.tasks - len(errors)
        retries = stats.retries
        by_sqlstate = dict(stats.retries_by_sqlstate)
    async with engine.connect() as conn:
        total = (
            await conn.exec_driver_sql("SELECT sum(balance) FROM bench_bank_accounts")
        ).scalar_one()
    return {
        "api": name,
        "transfers": commits,
        "seconds": round(elapsed, 3),
        "transfers_per_s": round(commits / elapsed, 1),
        "retries": retries,
        "retries_per_commit": round(retries / commits, 3) if commits else None,
        "retries_by_sqlstate": by_sqlstate,
        "replays": stats.replays,
        "replay_mismatches": stats.replay_mismatches,
        "errors": len(errors),
        "balance_conserved": total == args.accounts * START,
    }


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    server = None
    url = args.url
    if url is None:
        from sqlalchemy_crdb_async.testing import EmbeddedPostgres

        server = EmbeddedPostgres().start()
        url = server.url.replace("postgresql://", "cockroachdb+asyncpg://", 1)
    engine = create_async_engine(
        url, pool_size=args.tasks, max_overflow=0, isolation_level="SERIALIZABLE"
    )
    policy = crdb.RetryPolicy(max_attempts=args.max_attempts)
    plain = PlainLoop(policy)
    table = apis(policy, plain)
    names = [n for n in table if not args.only or n in args.only]
    rows: list[dict[str, Any]] = []
    try:
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                rows.append(await measure(engine, name, table[name], args, plain))
    finally:
        await engine.dispose()
        if server is not None:
            server.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="default: an embedded PostgreSQL")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--transfers", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--only", action="append", default=None, help="run only this API (repeatable)"
    )
    parser.add_argument("--max-attempts", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args(argv)
    rows = asyncio.run(amain(args))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        cols = [
            "api",
            "transfers",
            "seconds",
            "transfers_per_s",
            "retries",
            "retries_per_commit",
            "replays",
            "replay_mismatches",
            "errors",
            "balance_conserved",
        ]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for row in rows:
            print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return 0 if all(r["errors"] == 0 and r["balance_conserved"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
