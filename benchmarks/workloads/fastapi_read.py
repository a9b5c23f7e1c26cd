"""FastAPI request path, read: ``GET /accounts/{id}`` of the example app.

One operation reads one of 100 accounts by primary key. The reference and
the library's rows are requests through the same FastAPI app, in process over
httpx's ``ASGITransport`` (no socket, no server process):

- ``asyncpg-fastapi`` (the reference): ``GET /raw/accounts/{id}``, the endpoint
  written on raw asyncpg (``Pool.fetchrow``, no transaction);
- ``ours-fastapi`` ``GET /accounts/{id}``: the example's ORM endpoint,
  ``session.get`` on the read-only session, on ``RetryingRoute``;
- ``ours-fastapi`` ``GET /fast/accounts/{id}``: its fast-path twin, the
  prepared statement on the engine (one round trip), on ``RetryingRoute``.

Two rows without HTTP show what the layers below cost: raw asyncpg
``Pool.fetchrow`` and ``AsyncSession.get(Account, id)`` on our dialect.
Both apps' pools hold as many connections as the cell has clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import Ctx, Workload
from ._fastapi import (
    READ_SQL,
    account_ids,
    app_module,
    app_unavailable,
    create_accounts,
)

if TYPE_CHECKING:
    import asyncpg

ACCOUNTS = 100
IDS = account_ids(ACCOUNTS)


async def _setup(conn: asyncpg.Connection) -> None:
    await create_accounts(conn, ACCOUNTS)


# The FastAPI workloads share the app's tables: each cell starts afresh.
workload = Workload("fastapi_read", __doc__, setup=_setup, before_cell=_setup)


async def _get(ctx: Ctx, path: str) -> None:
    response = await ctx.handle.client.get(f"{path}/{ctx.rng.choice(IDS)}")
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text}")


@workload.scenario(
    "asyncpg-fastapi",
    "GET /raw/accounts/{id}",
    reference=True,
    requires=app_unavailable,
)
async def raw_fastapi_get(ctx: Ctx) -> None:
    """the same endpoint on raw asyncpg, in the same FastAPI app"""
    await _get(ctx, "/raw/accounts")


@workload.scenario("ours-fastapi", "GET /accounts/{id}", requires=app_unavailable)
async def fastapi_get(ctx: Ctx) -> None:
    """RetryingRoute + the read-only session's session.get (ORM)"""
    await _get(ctx, "/accounts")


@workload.scenario("ours-fastapi", "GET /fast/accounts/{id}", requires=app_unavailable)
async def fastapi_get_fast(ctx: Ctx) -> None:
    """RetryingRoute + the prepared fast path on the engine"""
    await _get(ctx, "/fast/accounts")


@workload.scenario("asyncpg", "fetchrow")
async def asyncpg_fetchrow(ctx: Ctx) -> None:
    """asyncpg Pool.fetchrow of the account, no HTTP"""
    assert await ctx.pool.fetchrow(READ_SQL, ctx.rng.choice(IDS)) is not None


@workload.scenario("ours", "session.get", requires=app_unavailable)
async def ours_session_get(ctx: Ctx) -> None:
    """AsyncSession.get(Account) on our dialect, no HTTP"""
    account_cls = app_module().Account
    async with ctx.sessionmaker() as session:
        account = await session.get(account_cls, ctx.rng.choice(IDS))
    assert account is not None
