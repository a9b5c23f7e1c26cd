"""FastAPI request path, write: ``POST /transfers`` of the example app.

One operation moves 1-10 units between two of 100 accounts as the example app
does it: ``SELECT ... FOR UPDATE`` of both rows in id order, then both
updates, retried on 40001/40P01. Three layers:

- raw asyncpg, the same statements, a plain retry loop (the reference);
- ``ours`` without HTTP: ``run_transaction(sessionmaker, move)`` with the
  app's model and ``RetryPolicy``;
- ``ours-fastapi``: ``POST /transfers`` through the example app, in process
  over httpx's ``ASGITransport``.

A 409 (the source account would be overdrawn) counts as a completed request.
After every cell the total balance must still be 100 x 1,000.00.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from .._harness.variants import ours_api
from . import BenchmarkInvariantError, Ctx, Workload
from ._fastapi import ACCOUNTS, TOTAL, app_module, app_unavailable, create_accounts
from .bank import MAX_ATTEMPTS, asyncpg_retry_loop

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncSession

LOCK_SQL = (
    "SELECT id, balance FROM bank_accounts WHERE id = $1 OR id = $2 "
    "ORDER BY id FOR UPDATE"
)
WRITE_SQL = "UPDATE bank_accounts SET balance = $2 WHERE id = $1"


async def _setup(conn: asyncpg.Connection) -> None:
    await create_accounts(conn)


async def _check(conn: asyncpg.Connection) -> None:
    total, count = await conn.fetchrow(
        "SELECT sum(balance), count(*) FROM bank_accounts"
    )
    if (Decimal(total), count) != (TOTAL, ACCOUNTS):
        raise BenchmarkInvariantError(
            f"the FastAPI bank is off: {count} accounts hold {total}, expected "
            f"{ACCOUNTS} accounts holding {TOTAL}"
        )


workload = Workload(
    "fastapi_transfer", __doc__, setup=_setup, check=_check, retries=True
)


def _pick(ctx: Ctx) -> tuple[int, int, Decimal]:
    src, dst = ctx.rng.sample(range(1, ACCOUNTS + 1), 2)
    return src, dst, Decimal(ctx.rng.randint(1, 10))


@workload.scenario("asyncpg", "retry loop", reference=True)
async def asyncpg_transfer(ctx: Ctx) -> None:
    """asyncpg, SELECT FOR UPDATE + 2 UPDATEs, plain retry loop"""
    src, dst, amount = _pick(ctx)

    async def body(conn: Any) -> None:
        rows = {r[0]: r[1] for r in await conn.fetch(LOCK_SQL, src, dst)}
        if rows[src] >= amount:
            await conn.execute(WRITE_SQL, src, rows[src] - amount)
            await conn.execute(WRITE_SQL, dst, rows[dst] + amount)

    await asyncpg_retry_loop(ctx, src, dst, body)


async def _prepare_ours(ctx: Ctx) -> None:
    app = app_module()

    def on_retry(event: Any) -> None:
        ctx.record_retry(getattr(event, "sqlstate", None))

    policy = app.POLICY
    ctx.extra["policy"] = type(policy)(
        max_attempts=MAX_ATTEMPTS,
        initial_backoff_s=policy.initial_backoff_s,
        max_backoff_s=policy.max_backoff_s,
        on_retry=on_retry,
    )


@workload.scenario(
    "ours", "run_transaction", requires=app_unavailable, prepare=_prepare_ours
)
async def ours_transfer(ctx: Ctx) -> None:
    """run_transaction(sessionmaker, move) with the app's model, no HTTP"""
    account_cls = app_module().Account
    src, dst, amount = _pick(ctx)

    async def move(session: AsyncSession) -> None:
        rows = await session.execute(
            select(account_cls)
            .where(account_cls.id.in_([src, dst]))
            .order_by(account_cls.id)
            .with_for_update()
        )
        accounts = {a.id: a for a in rows.scalars()}
        if accounts[src].balance >= amount:
            accounts[src].balance -= amount
            accounts[dst].balance += amount

    await ours_api("run_transaction")(
        ctx.sessionmaker, move, policy=ctx.extra["policy"]
    )


def _app_retries(ctx: Ctx) -> Any:
    return ours_api("retry_stats")(ctx.handle.engine)


async def _count_from(ctx: Ctx) -> None:
    ctx.extra["retry_stats"] = _app_retries(ctx)


async def _count_to(ctx: Ctx) -> None:
    before, after = ctx.extra["retry_stats"], _app_retries(ctx)
    ctx.retries = after.retries - before.retries
    for state, n in after.retries_by_sqlstate.items():
        delta = n - before.retries_by_sqlstate.get(state, 0)
        if delta:
            ctx.sqlstates[state] = delta


@workload.scenario(
    "ours-fastapi",
    "POST /transfers",
    requires=app_unavailable,
    started=_count_from,
    finished=_count_to,
)
async def fastapi_transfer(ctx: Ctx) -> None:
    """POST /transfers through the example FastAPI app"""
    src, dst, amount = _pick(ctx)
    response = await ctx.handle.client.post(
        "/transfers", json={"from_id": src, "to_id": dst, "amount": str(amount)}
    )
    if response.status_code not in (200, 409):
        raise RuntimeError(f"POST /transfers: {response.status_code} {response.text}")
