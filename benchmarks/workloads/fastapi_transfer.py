"""FastAPI request path, write: ``POST /transfers`` of the example app.

One operation moves 1-10 units between two accounts with a fresh
``Idempotency-Key``, as the example does it: look the key up, ``SELECT ...
FOR UPDATE`` both rows in id order, update both, record the transfer, in one
SERIALIZABLE transaction retried on 40001/40P01 (1 ms doubling backoff, capped
at 100 ms, full jitter, at most 100 attempts, on both sides). Two workloads:
``fastapi_transfer`` on 100 accounts and ``fastapi_transfer_hot`` on 10 (every
client fights for the same rows). Through the same FastAPI app, in process
over httpx's ``ASGITransport``:

- ``asyncpg-fastapi`` (the reference): ``POST /raw/transfers``, the endpoint on
  raw asyncpg with a plain retry loop;
- ``ours-fastapi`` ``POST /transfers``: the example's ORM endpoint on
  ``RetryingRoute`` (the route commits and re-runs the endpoint);
- ``ours-fastapi`` ``POST /fast/transfers``: its fast-path twin, the same
  statements prepared, on the route's connection (``route_connection``).

Both of ours call ``claim_keys()`` with the two accounts and the idempotency
key first (the app's ``_claim_transfer``): this process's transfers on a
shared account queue in process, the others run side by side. The raw
reference is a loop written by hand and has no such thing.

Without HTTP, for the layers below: the raw asyncpg transaction alone, and
``run_transaction(sessionmaker, move)`` with the app's model.

A 409 (the source account would be overdrawn) counts as a completed request.
After every cell the total balance must be unchanged.
"""

from __future__ import annotations

import contextlib
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from .._harness.apis import ours_api
from . import BenchmarkInvariantError, Ctx, Workload
from ._fastapi import (
    START_BALANCE,
    TransferRefused,
    account_ids,
    app_module,
    app_unavailable,
    create_accounts,
    transfer_on,
)
from .bank import MAX_ATTEMPTS, asyncpg_retry_loop

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncSession


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


async def _raw_from(ctx: Ctx) -> None:
    ctx.extra["raw_retries"] = ctx.handle.app.state.raw_retries.copy()


async def _raw_to(ctx: Ctx) -> None:
    delta = ctx.handle.app.state.raw_retries - ctx.extra["raw_retries"]
    ctx.retries = sum(delta.values())
    ctx.sqlstates.update(delta)


async def _prepare_ours(ctx: Ctx) -> None:
    def on_retry(event: Any) -> None:
        ctx.record_retry(getattr(event, "sqlstate", None))

    ctx.extra["policy"] = ours_api("RetryPolicy")(
        max_attempts=MAX_ATTEMPTS,
        initial_backoff_s=0.001,
        max_backoff_s=0.1,
        on_retry=on_retry,
    )


def transfer_workload(name: str, accounts: int) -> Workload:
    """The transfer workload on ``accounts`` accounts."""
    ids = account_ids(accounts)
    total = START_BALANCE * accounts

    async def setup(conn: asyncpg.Connection) -> None:
        await create_accounts(conn, accounts)

    async def check(conn: asyncpg.Connection) -> None:
        got, count = await conn.fetchrow(
            "SELECT sum(balance), count(*) FROM bank_accounts"
        )
        if (Decimal(got), count) != (total, accounts):
            raise BenchmarkInvariantError(
                f"the FastAPI bank is off: {count} accounts hold {got}, expected "
                f"{accounts} accounts holding {total}"
            )

    doc = (__doc__ or "").replace(
        "``fastapi_transfer`` on 100", f"``{name}`` on {accounts}"
    )
    # The FastAPI workloads share the app's tables: each cell starts afresh.
    workload = Workload(
        name, doc, setup=setup, before_cell=setup, check=check, retries=True
    )

    def pick(ctx: Ctx) -> tuple[uuid.UUID, uuid.UUID, Decimal]:
        src, dst = ctx.rng.sample(ids, 2)
        return src, dst, Decimal(ctx.rng.randint(1, 10))

    async def post(ctx: Ctx, path: str) -> None:
        src, dst, amount = pick(ctx)
        response = await ctx.handle.client.post(
            path,
            json={"from_id": str(src), "to_id": str(dst), "amount": str(amount)},
            headers={"Idempotency-Key": str(uuid.UUID(int=ctx.rng.getrandbits(128)))},
        )
        if response.status_code not in (200, 409):
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")

    @workload.scenario(
        "asyncpg-fastapi",
        "POST /raw/transfers",
        reference=True,
        requires=app_unavailable,
        started=_raw_from,
        finished=_raw_to,
    )
    async def raw_fastapi_transfer(ctx: Ctx) -> None:
        """the same endpoint on raw asyncpg + a plain retry loop, same app"""
        await post(ctx, "/raw/transfers")

    @workload.scenario(
        "ours-fastapi",
        "POST /transfers",
        requires=app_unavailable,
        started=_count_from,
        finished=_count_to,
    )
    async def fastapi_transfer(ctx: Ctx) -> None:
        """RetryingRoute + ORM endpoint, the example app"""
        await post(ctx, "/transfers")

    @workload.scenario(
        "ours-fastapi",
        "POST /fast/transfers",
        requires=app_unavailable,
        started=_count_from,
        finished=_count_to,
    )
    async def fastapi_transfer_fast(ctx: Ctx) -> None:
        """RetryingRoute + the fast path on the route's connection"""
        await post(ctx, "/fast/transfers")

    @workload.scenario("asyncpg", "retry loop")
    async def asyncpg_transfer(ctx: Ctx) -> None:
        """asyncpg, the endpoint's statements in a plain retry loop, no HTTP"""
        src, dst, amount = pick(ctx)

        async def body(conn: Any) -> None:
            with contextlib.suppress(TransferRefused):  # a 409: nothing to write
                await transfer_on(conn, src, dst, amount, None)

        await asyncpg_retry_loop(ctx, src, dst, body)

    @workload.scenario(
        "ours", "run_transaction", requires=app_unavailable, prepare=_prepare_ours
    )
    async def ours_transfer(ctx: Ctx) -> None:
        """run_transaction(sessionmaker, move) with the app's model, no HTTP"""
        account_cls = app_module().Account
        src, dst, amount = pick(ctx)

        async def move(session: AsyncSession) -> None:
            rows = await session.execute(
                select(account_cls)
                .where(account_cls.id.in_([src, dst]))
                .order_by(account_cls.id)
                .with_for_update()
            )
            found = {a.id: a for a in rows.scalars()}
            if found[src].balance >= amount:
                found[src].balance -= amount
                found[dst].balance += amount

        await ours_api("run_transaction")(
            ctx.sessionmaker, move, policy=ctx.extra["policy"]
        )

    return workload


workload = transfer_workload("fastapi_transfer", 100)
hot_workload = transfer_workload("fastapi_transfer_hot", 10)
