"""FastAPI request path, read: ``GET /accounts/{id}`` of the example app.

One operation reads one of 100 accounts by primary key. Three layers, so the
table shows what each costs:

- raw asyncpg ``Pool.fetchrow`` of the same row (the reference);
- ``ours`` without HTTP: ``AsyncSession.get(Account, id)``, the app's own
  model and session settings, on our dialect;
- ``ours-fastapi``: the request through the example app
  (``examples/fastapi_bank``), sent in process over httpx's ``ASGITransport``
  (no socket, no server process): routing, validation, dependency injection
  and JSON on top of the same session code. The app sizes its own pool with
  ``PoolSettings.for_cluster(vcpus=4)`` whatever the concurrency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import Ctx, Workload
from ._fastapi import ACCOUNTS, app_module, app_unavailable, create_accounts

if TYPE_CHECKING:
    import asyncpg

SQL = "SELECT id, owner, balance FROM bank_accounts WHERE id = $1"


async def _setup(conn: asyncpg.Connection) -> None:
    await create_accounts(conn)


workload = Workload("fastapi_read", __doc__, setup=_setup)


@workload.scenario("asyncpg", "fetchrow", reference=True)
async def asyncpg_fetchrow(ctx: Ctx) -> None:
    """asyncpg Pool.fetchrow of the account"""
    assert await ctx.pool.fetchrow(SQL, ctx.rng.randint(1, ACCOUNTS)) is not None


@workload.scenario("ours", "session.get", requires=app_unavailable)
async def ours_session_get(ctx: Ctx) -> None:
    """AsyncSession.get(Account) on our dialect, no HTTP"""
    account_cls = app_module().Account
    async with ctx.sessionmaker() as session:
        account = await session.get(account_cls, ctx.rng.randint(1, ACCOUNTS))
    assert account is not None


@workload.scenario("ours-fastapi", "GET /accounts/{id}", requires=app_unavailable)
async def fastapi_get(ctx: Ctx) -> None:
    """GET /accounts/{id} through the example FastAPI app"""
    response = await ctx.handle.client.get(f"/accounts/{ctx.rng.randint(1, ACCOUNTS)}")
    if response.status_code != 200:
        raise RuntimeError(f"GET /accounts: {response.status_code} {response.text}")
